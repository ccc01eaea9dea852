package eventlog

import (
	"context"
	"errors"
	"fmt"
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
}

// Follow delivers every event with a sequence of at least from (0: only
// events stored from now on), in stream order and without gaps other than
// events the stream's limits removed, to handle, until ctx ends or the NATS
// connection closes. It runs one ordered consumer on all channels: one per
// gateway node, never one per client. handle is called from one goroutine
// at a time; blocking in it applies back-pressure to the consumer, never
// loss.
func (l *Log) Follow(ctx context.Context, from uint64, opts FollowOptions, handle func(Event)) error {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = time.Second
	}
	if opts.BatchMessages <= 0 {
		opts.BatchMessages = 1000
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
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			errHandler(nil, fmt.Errorf("eventlog: live event without metadata: %w", err))
			return
		}
		channel, _ := l.ChannelOf(msg.Subject())
		handle(Event{Channel: channel, Seq: meta.Sequence.Stream, Data: msg.Data(), Time: meta.Timestamp, Pending: meta.NumPending})
	},
		jetstream.PullHeartbeat(opts.Heartbeat),
		jetstream.PullMaxMessages(opts.BatchMessages),
		jetstream.ConsumeErrHandler(errHandler))
	if err != nil {
		return fmt.Errorf("eventlog: start live consumer: %w", err)
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-closed:
		err = fmt.Errorf("eventlog: live consumer stopped: %w", err)
	}
	cc.Stop()
	<-cc.Closed()
	if info := cons.CachedInfo(); info != nil && err == nil {
		// Stop leaves the server-side consumer until InactiveThreshold;
		// remove it now. Best effort: it expires anyway.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.js.DeleteConsumer(dctx, l.readName, info.Name)
		cancel()
	}
	return err
}
