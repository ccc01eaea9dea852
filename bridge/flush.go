package bridge

import (
	"context"
	"runtime"
	"sync"
)

// After a batch, the dispatcher writes to every socket that received
// something. A few sockets are written inline: a hand-off would cost more
// than the writes. Many sockets (a busy moment, or a broadcast) are split
// into chunks written in parallel by flusher goroutines, one per spare CPU,
// so that one goroutine's syscalls do not serialise the whole node; the
// dispatcher writes one chunk itself and waits for the rest before its next
// batch, which keeps every socket's frames in order and the hand-off
// bounded.

// flushChunk is the number of sockets one goroutine writes per batch.
const flushChunk = 64

type flushJob struct {
	conns []*conn
	done  *sync.WaitGroup
}

// flushers are the flusher goroutines. The dispatcher is their only
// client: it closes them (stop) when it exits.
type flushers struct {
	jobs    chan flushJob
	workers int
}

func newFlushers() *flushers {
	workers := max(runtime.GOMAXPROCS(0)-1, 1)
	return &flushers{jobs: make(chan flushJob, workers), workers: workers}
}

// run runs the flushers until stop is called.
func (f *flushers) run(context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < f.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range f.jobs {
				flushAll(job.conns)
				job.done.Done()
			}
		}()
	}
	wg.Wait()
	return nil
}

// stop ends the flushers once their jobs are done. Only the dispatcher
// calls it, after its last flush.
func (f *flushers) stop() { close(f.jobs) }

func flushAll(conns []*conn) {
	for _, c := range conns {
		c.flush()
	}
}

// flush writes the sockets, splitting them evenly between the flushers and
// the caller when there are many, and returns when all are written.
func (f *flushers) flush(conns []*conn) {
	parts := min(f.workers+1, (len(conns)+flushChunk-1)/flushChunk)
	if parts <= 1 {
		flushAll(conns)
		return
	}
	size := (len(conns) + parts - 1) / parts
	var done sync.WaitGroup
	rest := conns
	for len(rest) > size {
		done.Add(1)
		f.jobs <- flushJob{conns: rest[:size], done: &done} // never blocks: the buffer holds a batch's jobs
		rest = rest[size:]
	}
	flushAll(rest)
	done.Wait()
}
