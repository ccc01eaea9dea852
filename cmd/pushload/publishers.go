package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// A sender publishes events in its own way (NATS, HTTP, Redis, …). send is
// given a batch of events, all for channels owned by one worker, in the
// order they must be published; it publishes them in that order and
// reports each failure through fail. Events are built by the sender with
// build.
type sender interface {
	// send publishes evs in order; it returns only when each is published
	// or reported failed.
	send(ctx context.Context, evs []pubEvent, build func(b []byte, ev pubEvent) []byte, fail func(ev pubEvent, err error))
	// flush waits for asynchronous publications to be acknowledged.
	flush(ctx context.Context) error
	// maxBatch is the largest batch send takes; 1 for one event a call.
	maxBatch() int
	close()
}

// pubEvent is one event to publish: channel index, sequence, and the time
// it was scheduled (UnixNano). The event carries the scheduled time, not
// the time a worker got to it, so that latency includes any backlog of the
// publishing path (no coordinated omission) and every event is attributed
// to the phase that scheduled it.
type pubEvent struct {
	ch int
	n  int64
	ts int64
}

// publisher fans events out to a fixed set of workers by channel, so that
// each channel's events are published in order by one worker while
// channels proceed in parallel. Its workers are owned by it: start them
// with run and stop them by closing (finish), which waits for them.
type publisher struct {
	kind   string
	snd    sender
	bk     *book
	pad    string
	queues []chan pubEvent
	wg     sync.WaitGroup
	once   sync.Once
}

func newPublisher(kind string, snd sender, bk *book, workers int, pad string) *publisher {
	p := &publisher{kind: kind, snd: snd, bk: bk, pad: pad, queues: make([]chan pubEvent, max(1, workers))}
	for i := range p.queues {
		p.queues[i] = make(chan pubEvent, 4096)
	}
	return p
}

// run starts the workers; they stop after finish closes their queues and
// they have published what was queued, or when ctx ends.
func (p *publisher) run(ctx context.Context) {
	for _, q := range p.queues {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.work(ctx, q)
		}()
	}
}

func (p *publisher) work(ctx context.Context, q chan pubEvent) {
	batch := make([]pubEvent, 0, p.snd.maxBatch())
	build := func(b []byte, ev pubEvent) []byte {
		return appendPayload(b, p.bk.names[ev.ch], ev.n, ev.ts, p.pad)
	}
	fail := func(ev pubEvent, err error) { p.bk.fail(ev.ch, ev.n, err) }
	for {
		var ev pubEvent
		var ok bool
		select {
		case ev, ok = <-q:
		case <-ctx.Done():
			p.failQueued(q, ctx.Err())
			return
		}
		if !ok {
			return
		}
		batch = append(batch[:0], ev)
	more:
		for len(batch) < cap(batch) {
			select {
			case ev, ok = <-q:
				if !ok {
					break more
				}
				batch = append(batch, ev)
			default:
				break more
			}
		}
		p.snd.send(ctx, batch, build, fail)
		p.bk.sent.Add(int64(len(batch)))
		if !ok {
			return
		}
	}
}

// failQueued marks what is still queued as failed once ctx has ended, so
// that nothing allocated is counted as lost.
func (p *publisher) failQueued(q chan pubEvent, err error) {
	for {
		select {
		case ev, ok := <-q:
			if !ok {
				return
			}
			p.bk.fail(ev.ch, ev.n, err)
			p.bk.unsent.Add(1)
		default:
			return
		}
	}
}

// publish allocates the next event of channel ch and queues it. It blocks
// while the channel's worker is behind.
func (p *publisher) publish(ctx context.Context, ch int) (int64, error) {
	n := p.bk.alloc(ch)
	select {
	case p.queues[ch%len(p.queues)] <- pubEvent{ch: ch, n: n, ts: time.Now().UnixNano()}:
		return n, nil
	case <-ctx.Done():
		p.bk.fail(ch, n, ctx.Err())
		p.bk.unsent.Add(1)
		return n, ctx.Err()
	}
}

// finish closes the queues, waits for the workers to publish what was
// queued, then for acknowledgements (bounded by ctx).
func (p *publisher) finish(ctx context.Context) error {
	p.once.Do(func() {
		for _, q := range p.queues {
			close(q)
		}
	})
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("publishers still busy: %w", ctx.Err())
	}
	return p.snd.flush(ctx)
}

// close releases the sender; call after finish.
func (p *publisher) close() { p.snd.close() }
