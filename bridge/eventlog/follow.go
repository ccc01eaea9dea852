package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FollowOptions tune Follow.
type FollowOptions struct {
	// Heartbeat is the pull heartbeat; a silent server is noticed after two.
	// Default 1s (the jetstream default of 5s stalls for 10s when the
	// consumer's host server goes away).
	Heartbeat time.Duration
	// BatchMessages is how many events one pull asks for. Default 1000.
	BatchMessages int
	// OnError is told about consumer errors (missed heartbeats, resets);
	// the ordered consumer recovers from them by itself.
	OnError func(error)
	// StallTimeout: when nothing has been delivered for this long, and
	// for the last half of it the stream held events after the last one
	// delivered, Follow gives the consumer up and returns an error
	// wrapping ErrStalled, so that the caller starts a new one. Time that
	// handle spends blocked (back-pressure) is never a stall. Default 5s.
	StallTimeout time.Duration
}

// ErrStalled is returned by Follow when its consumer stopped delivering
// although the stream holds newer events.
//
// It happens after a cluster node crashes: the ordered consumer, having
// missed heartbeats, recreates its server-side consumer under the same name,
// and the meta leader may place it on the crashed node, which it counts as
// online for minutes (nats-server's orphan detection); every retry then
// addresses that assignment and fails, as long as the node stays down. A
// new ordered consumer gets a new name and a new placement.
var ErrStalled = errors.New("eventlog: live consumer stalled")

// Follow delivers every event with a sequence of at least from (0: only
// events stored from now on), in stream order and without gaps other than
// events the stream's limits removed, to handle, until ctx ends, the NATS
// connection closes or the consumer stalls (ErrStalled; nothing is handed
// over after Follow returns, so the caller resumes after the last event it
// got). It runs one ordered consumer on all channels: one per gateway node,
// never one per client. handle is called from one goroutine at a time;
// blocking in it applies back-pressure to the consumer, never loss.
func (l *Log) Follow(ctx context.Context, from uint64, opts FollowOptions, handle func(Event)) error {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = time.Second
	}
	if opts.BatchMessages <= 0 {
		opts.BatchMessages = 1000
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 5 * time.Second
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{l.Wildcard()},
		// A gateway that dies leaves its consumer behind; the server
		// removes it after this long without pulls.
		InactiveThreshold: 30 * time.Second,
	}
	if from == 0 {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	cons, err := l.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("eventlog: create live consumer from %d: %w", from, err)
	}
	closed := make(chan error, 1)
	errHandler := func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
			select {
			case closed <- err:
			default:
			}
			return
		}
		if opts.OnError != nil {
			opts.OnError(err)
		}
	}
	// gate keeps a given-up consumer from handing over anything more: its
	// library goroutines may outlive Follow (see stop below).
	var (
		gate      sync.Mutex
		abandoned bool
		// last is the last sequence handed over (0: none yet with from
		// 0); the stall check notices progress by its changes.
		last atomic.Uint64
		// handling is set while handle runs: a caller applying
		// back-pressure is not a stalled consumer.
		handling atomic.Bool
	)
	if from > 0 {
		last.Store(from - 1)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		gate.Lock()
		defer gate.Unlock()
		if abandoned {
			return
		}
		meta, err := msg.Metadata()
		if err != nil {
			errHandler(nil, fmt.Errorf("eventlog: live event without metadata: %w", err))
			return
		}
		channel, _ := l.ChannelOf(msg.Subject())
		handling.Store(true)
		handle(Event{Channel: channel, Seq: meta.Sequence.Stream, Data: msg.Data(), Time: meta.Timestamp, Pending: meta.NumPending})
		handling.Store(false)
		last.Store(meta.Sequence.Stream)
	},
		jetstream.PullHeartbeat(opts.Heartbeat),
		jetstream.PullMaxMessages(opts.BatchMessages),
		jetstream.ConsumeErrHandler(errHandler))
	if err != nil {
		return fmt.Errorf("eventlog: start live consumer: %w", err)
	}
	// The stall check looks at the stream once nothing was delivered for
	// half the timeout, and gives up when the stream still holds newer
	// events, undelivered, half a timeout after it first saw them: an event
	// that arrives after an idle spell has that long to be delivered.
	half := opts.StallTimeout / 2
	check := time.NewTicker(min(time.Second, half/2))
	defer check.Stop()
	known := from > 0
	stalled := false
	// progressAt is when last was seen to change, or the stream to hold
	// nothing newer.
	progressAt, seen := time.Now(), last.Load()
	var behindSince time.Time // when the stream was first seen ahead of last
	var behindAt uint64       // last, then
wait:
	for {
		select {
		case <-ctx.Done():
			err = nil
			break wait
		case err = <-closed:
			err = fmt.Errorf("eventlog: live consumer stopped: %w", err)
			break wait
		case <-check.C:
			if done := last.Load(); done != seen {
				progressAt, seen = time.Now(), done
			}
			if handling.Load() || time.Since(progressAt) < half {
				behindSince = time.Time{}
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, opts.StallTimeout)
			st, serr := l.State(sctx)
			cancel()
			if serr != nil {
				continue // no stream leader: nothing to compare with yet
			}
			if !known {
				// From 0 the consumer delivers only what is stored after
				// its start: compare with the stream's end from now on.
				known = true
				last.CompareAndSwap(0, st.LastSeq)
				progressAt, seen = time.Now(), last.Load()
				continue
			}
			done := last.Load()
			if st.Msgs == 0 || st.LastSeq <= done {
				// Idle, not stalled: look again in half a timeout.
				progressAt = time.Now()
				behindSince = time.Time{}
				continue
			}
			if behindSince.IsZero() || behindAt != done {
				behindSince, behindAt = time.Now(), done
				continue
			}
			if time.Since(behindSince) < half {
				continue
			}
			err = fmt.Errorf("%w: nothing delivered for %s while the stream holds events up to %d, last delivered %d",
				ErrStalled, time.Since(progressAt).Round(time.Millisecond), st.LastSeq, done)
			if opts.OnError != nil {
				opts.OnError(err)
			}
			stalled = true
			break wait
		}
	}
	gate.Lock()
	abandoned = true
	gate.Unlock()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// Stop waits for a reset in progress, which can take the
		// library's own create timeout (10s) and backoff to notice.
		cc.Stop()
		<-cc.Closed()
	}()
	if stalled {
		// Do not wait for the stuck reset: the gate already silences the
		// consumer, and a new one can start now.
		select {
		case <-stopped:
		case <-time.After(time.Second):
		}
		return err
	}
	<-stopped
	if info := cons.CachedInfo(); info != nil && err == nil {
		// Stop leaves the server-side consumer until InactiveThreshold;
		// remove it now. Best effort: it expires anyway.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.js.DeleteConsumer(dctx, l.readName, info.Name)
		cancel()
	}
	return err
}
