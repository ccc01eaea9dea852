package bridge

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// Replays that the ring cannot serve read JetStream. One at a time, each
// reads its channel with batched direct gets. When many arrive together (a
// node died and its clients reconnect here at once), per-channel reads would
// queue behind each other on the server; instead they are coalesced: the
// requests gathered within a short window are served by one sequential scan
// of the stream from the smallest last_id, handing each event to the
// requests of its channel (jetstream-notes §2.5: 1000 replays in 0.16 s
// instead of 5–11 s).

const (
	// directReplays is how many JetStream replays may run on their own
	// before new ones are coalesced.
	directReplays = 4
	// coalesceWindow is how long the coalescer gathers requests.
	coalesceWindow = 2 * time.Millisecond
	// maxScanEvents bounds one coalesced scan (and the memory its events
	// take); requests beyond it are read on their own.
	maxScanEvents = 200_000
)

// fetchRequest asks for a channel's events in (after, upTo].
type fetchRequest struct {
	channel     string
	after, upTo uint64
	events      []*event
	err         error
	done        chan struct{}
}

// coalescer gathers fetch requests and serves them with shared scans. Its
// loop runs for the server's life.
type coalescer struct {
	srv      *Server
	inflight atomic.Int64
	reqs     chan *fetchRequest
	scans    atomic.Int64 // for tests and metrics
}

func newCoalescer(s *Server) *coalescer {
	return &coalescer{srv: s, reqs: make(chan *fetchRequest, 1024)}
}

// fetch returns the channel's stored events in (after, upTo], framed.
func (co *coalescer) fetch(ctx context.Context, channel string, after, upTo uint64) ([]*event, error) {
	if co.inflight.Add(1) <= directReplays {
		defer co.inflight.Add(-1)
		return co.srv.readChannel(ctx, channel, after, upTo)
	}
	co.inflight.Add(-1)
	req := &fetchRequest{channel: channel, after: after, upTo: upTo, done: make(chan struct{})}
	select {
	case co.reqs <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("queue replay: %w", ctx.Err())
	}
	select {
	case <-req.done:
		return req.events, req.err
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for coalesced replay: %w", ctx.Err())
	}
}

// run serves queued requests until ctx ends.
func (co *coalescer) run(ctx context.Context) error {
	for {
		var first *fetchRequest
		select {
		case <-ctx.Done():
			co.failQueued(ctx.Err())
			return nil
		case first = <-co.reqs:
		}
		batch := []*fetchRequest{first}
		window := time.NewTimer(coalesceWindow)
	gather:
		for len(batch) < 100_000 {
			select {
			case r := <-co.reqs:
				batch = append(batch, r)
			case <-window.C:
				break gather
			case <-ctx.Done():
				break gather
			}
		}
		window.Stop()
		co.serve(ctx, batch)
	}
}

func (co *coalescer) failQueued(err error) {
	for {
		select {
		case r := <-co.reqs:
			r.err = err
			close(r.done)
		default:
			return
		}
	}
}

// serve answers a batch: one scan over the smallest range that covers the
// requests, or per-channel reads when the batch is small or spread too far.
func (co *coalescer) serve(ctx context.Context, batch []*fetchRequest) {
	lo, hi := batch[0].after, batch[0].upTo
	for _, r := range batch[1:] {
		lo, hi = min(lo, r.after), max(hi, r.upTo)
	}
	if len(batch) < 2*directReplays || hi-lo > maxScanEvents {
		co.serveEach(ctx, batch)
		return
	}
	co.scans.Add(1)
	byChannel := make(map[string][]*fetchRequest, len(batch))
	for _, r := range batch {
		byChannel[r.channel] = append(byChannel[r.channel], r)
	}
	var frames frameEncoder
	sctx, cancel := context.WithTimeout(ctx, co.srv.cfg.ReplayTimeout)
	defer cancel()
	err := co.srv.events.Scan(sctx, lo, hi, func(ev eventlog.Event) error {
		reqs := byChannel[ev.Channel]
		if len(reqs) == 0 {
			return nil
		}
		var e *event
		for _, r := range reqs {
			if ev.Seq <= r.after || ev.Seq > r.upTo {
				continue
			}
			if e == nil {
				var err error
				if e, _, err = frames.encode(co.srv.id(ev.Seq), ev.Data); err != nil {
					return nil // skipped by the dispatcher as well
				}
			}
			r.events = append(r.events, e)
		}
		return nil
	})
	co.srv.log.Debug("coalesced replay scan", "requests", len(batch), "from_seq", lo+1, "to_seq", hi, "err", err)
	for _, r := range batch {
		if err != nil {
			r.err, r.events = fmt.Errorf("coalesced replay scan: %w", err), nil
		}
		close(r.done)
	}
}

// serveEach reads every request's channel on its own, a few at a time.
func (co *coalescer) serveEach(ctx context.Context, batch []*fetchRequest) {
	sem := make(chan struct{}, directReplays)
	var wg sync.WaitGroup
	for _, r := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.events, r.err = co.srv.readChannel(ctx, r.channel, r.after, r.upTo)
			close(r.done)
		}()
	}
	wg.Wait()
}

// readChannel reads one channel's events in (after, upTo] from JetStream,
// bounded in concurrency by ReplayConcurrency.
func (s *Server) readChannel(ctx context.Context, channel string, after, upTo uint64) ([]*event, error) {
	select {
	case s.replaySem <- struct{}{}:
		defer func() { <-s.replaySem }()
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a replay slot: %w", ctx.Err())
	}
	var out []*event
	var frames frameEncoder
	err := s.events.Read(ctx, channel, after, upTo, func(ev eventlog.Event) error {
		if e, _, err := frames.encode(s.id(ev.Seq), ev.Data); err == nil {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
