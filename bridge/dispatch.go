package bridge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// dispatchBatch caps the events handled before the dirty sockets are
// flushed, so that latency stays bounded under a flood.
const dispatchBatch = 512

// runDispatcher runs the node's live consumer and fans every event out to
// the sockets of its channel. It restarts the consumer after it fails
// (NATS gone for good) from the first event not yet handed over.
func (s *Server) runDispatcher(ctx context.Context) error {
	defer s.flushers.stop()
	start, readyAt, err := s.startPosition(ctx)
	if err != nil {
		return err
	}
	s.hub.ring.floor.Store(start - 1)
	s.hub.cursor.Store(start - 1)
	s.metrics.dispatchedSeq.Set(float64(start - 1))
	d := &dispatcher{srv: s, readyAt: readyAt, in: make(chan eventlog.Event, 4096), invalidLog: logLimiter{period: time.Second}}
	if readyAt == 0 {
		s.markReady()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.follow(ctx, start)
	}()
	d.loop(ctx)
	wg.Wait()
	return nil
}

// startPosition decides where the live consumer starts: WarmEvents before
// the stream's end, so the ring holds recent history before the node
// serves; readyAt is the last sequence at start (0: ready at once).
//
// For a node reading a regional mirror the stream's end is the origin's:
// a mirror that is new or was cut off holds less than the origin and
// copies the rest in order, and the node must neither serve that backlog
// to its sockets as live events nor report ready before it has passed
// the origin's end as of its start. When the origin cannot be reached the
// node starts from what its mirror holds.
func (s *Server) startPosition(ctx context.Context) (start, readyAt uint64, err error) {
	backoff := 100 * time.Millisecond
	for {
		st, err := s.events.State(ctx)
		if err == nil {
			end := st.LastSeq
			if s.events.Config().Mirror != nil {
				// The same bound as the origin query for a last_id ahead.
				hctx, cancel := context.WithTimeout(ctx, s.cfg.ReplayTimeout/5)
				head, herr := s.events.Head(hctx)
				cancel()
				switch {
				case herr != nil:
					s.log.Warn("origin stream unreachable; the live consumer starts from the mirror's end", "err", herr)
				case head > end:
					end = head
				}
			}
			start = max(st.FirstSeq, 1)
			if end >= s.cfg.WarmEvents && end-s.cfg.WarmEvents+1 > start {
				start = end - s.cfg.WarmEvents + 1
			}
			if end > st.LastSeq || (st.Msgs > 0 && end >= start) {
				readyAt = end
			}
			if end == st.LastSeq && st.Msgs == 0 {
				start = st.LastSeq + 1
			}
			s.log.Info("live consumer starting", "from_seq", start, "stream_last_seq", st.LastSeq, "origin_last_seq", end, "epoch", s.epoch)
			return start, readyAt, nil
		}
		s.notReady.Store("event log unavailable: " + err.Error())
		s.log.Warn("cannot read event log state, retrying", "err", err)
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Server) markReady() {
	if !s.draining.Load() && !s.ready.Swap(true) {
		s.log.Info("gateway ready", "dispatched_seq", s.hub.cursor.Load())
	}
}

// dispatcher is the state of the dispatch loop, owned by its goroutine.
type dispatcher struct {
	srv     *Server
	readyAt uint64
	in      chan eventlog.Event
	frames  frameEncoder
	dirty   []*conn
	urgent  []*conn
	// handed is the last sequence the consumer handed over (follow's
	// goroutine only).
	handed uint64

	invalidLog logLimiter
}

// follow feeds d.in from the live consumer, restarting it after failures.
func (d *dispatcher) follow(ctx context.Context, start uint64) {
	s := d.srv
	from := start
	backoff := 100 * time.Millisecond
	opts := eventlog.FollowOptions{OnError: func(err error) {
		s.metrics.consumerErrors.Inc()
		s.log.Warn("live consumer error (it recovers by itself)", "err", err)
	}}
	for ctx.Err() == nil {
		err := s.events.Follow(ctx, from, opts, func(ev eventlog.Event) {
			select {
			case d.in <- ev:
				d.handed = ev.Seq
			case <-ctx.Done():
			}
		})
		if ctx.Err() != nil {
			return
		}
		if d.handed >= from {
			// It delivered before it failed: a new failure, not the same
			// one again, so retry soon.
			from = d.handed + 1
			backoff = 100 * time.Millisecond
		}
		s.ready.Store(false)
		s.notReady.Store("live consumer down: " + errString(err))
		s.log.Error("live consumer stopped, restarting", "err", err, "from_seq", from, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func errString(err error) string {
	if err == nil {
		return "stopped"
	}
	return err.Error()
}

// loop dispatches events in batches: queue each event to its sockets, then
// write to every socket that received something, so that several events
// for one socket go out in one write.
func (d *dispatcher) loop(ctx context.Context) {
	s := d.srv
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			d.checkReady()
			continue
		case ev := <-d.in:
			d.handle(ev)
		}
	drain:
		for n := 1; n < dispatchBatch; n++ {
			select {
			case ev := <-d.in:
				d.handle(ev)
			default:
				break drain
			}
		}
		s.flushers.flush(d.dirty)
		clear(d.dirty)
		d.dirty = d.dirty[:0]
		s.hub.ringEvict()
		s.metrics.dispatchedSeq.Set(float64(s.hub.cursor.Load()))
		s.metrics.ringBytes.Set(float64(s.hub.ring.bytes))
		s.metrics.ringEvents.Set(float64(s.hub.ring.count))
		s.cursorSig.broadcast()
	}
}

// handle fans one event out.
func (d *dispatcher) handle(ev eventlog.Event) {
	s := d.srv
	s.metrics.eventsIn.Inc()
	// Pending counts what the read stream holds: a mirror still copying its
	// origin can have none pending long before readyAt.
	if !s.ready.Load() && d.readyAt != 0 && (ev.Seq >= d.readyAt || (ev.Pending == 0 && s.events.Config().Mirror == nil)) {
		defer s.markReady()
	}
	if err := eventlog.ValidateChannel(ev.Channel); err != nil {
		d.invalid(ev, err)
		s.hub.cursor.Store(ev.Seq)
		return
	}
	e, _, err := d.frames.encode(s.id(ev.Seq), ev.Data)
	if err != nil {
		d.invalid(ev, err)
		s.hub.cursor.Store(ev.Seq)
		return
	}
	sh := s.hub.shardOf(ev.Channel)
	sh.mu.Lock()
	ch := s.hub.getLocked(sh, ev.Channel)
	s.hub.ringAddLocked(ch, e)
	for _, c := range ch.conns {
		dirty, urgent := c.deliver(e)
		if dirty {
			d.dirty = append(d.dirty, c)
		}
		if urgent {
			d.urgent = append(d.urgent, c)
		}
	}
	// Stored under the channel's lock: see hub.cursor.
	s.hub.cursor.Store(ev.Seq)
	sh.mu.Unlock()
	// A socket whose queue filled up within the batch is written now
	// rather than at the batch's end, so that a burst is not mistaken for
	// a slow client.
	for i, c := range d.urgent {
		c.flush()
		d.urgent[i] = nil
	}
	d.urgent = d.urgent[:0]
}

// invalid counts and logs an event no client can receive, at most once a
// second with the number of others suppressed.
func (d *dispatcher) invalid(ev eventlog.Event, err error) {
	s := d.srv
	s.metrics.eventsInvalid.Inc()
	if ok, suppressed := d.invalidLog.allow(); ok {
		s.log.Warn("skipping event that cannot be sent to browsers", "seq", ev.Seq, "channel", ev.Channel,
			"err", err, "suppressed_since_last", suppressed)
	}
}

// checkReady covers the case where the events that would mark the node
// ready were removed from the stream before the consumer read them, and a
// live consumer that restarted with nothing left to read. It uses the
// stream check's last state, so the dispatcher never waits for NATS here.
func (d *dispatcher) checkReady() {
	s := d.srv
	if s.ready.Load() || s.draining.Load() {
		return
	}
	st := s.stream.Load()
	if st == nil || st.Failures > 0 {
		return
	}
	if st.LastSeq < d.readyAt {
		return // a mirror still copying its origin up to readyAt
	}
	if s.hub.cursor.Load() >= st.LastSeq || st.Msgs == 0 {
		s.markReady()
	}
}

// cursorSignal wakes goroutines waiting for the dispatcher to pass a
// sequence (a client whose last_id is ahead of this node).
type cursorSignal struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiting bool
}

func (c *cursorSignal) init() { c.ch = make(chan struct{}) }

// wait returns a channel closed after the next dispatched batch.
func (c *cursorSignal) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = true
	return c.ch
}

func (c *cursorSignal) broadcast() {
	c.mu.Lock()
	if c.waiting {
		close(c.ch)
		c.ch = make(chan struct{})
		c.waiting = false
	}
	c.mu.Unlock()
}

var errLastIDAhead = errors.New("last_id is ahead of the stream")
