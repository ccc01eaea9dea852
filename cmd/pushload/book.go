package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// book is the record of what was published to each channel: the channel
// names, the last sequence number handed to a publisher, the events whose
// publication failed, and how many reading clients each channel has (to
// know how many deliveries an event is worth). It is safe for concurrent
// use.
type book struct {
	names []string
	// allocated[ch] is the n of the last event of ch handed to a
	// publisher; events are numbered 1, 2, 3, … per channel.
	allocated []atomic.Int64
	// subs[ch] counts the reading clients subscribed to ch.
	subs []atomic.Int32

	// total counts allocations; sent events a worker has sent (or tried
	// to: its failure is then also in failed); unsent events that failed
	// without reaching a worker.
	total  atomic.Int64
	sent   atomic.Int64
	unsent atomic.Int64
	failed atomic.Int64

	mu         sync.Mutex
	failedByCh map[int][]int64 // sorted
	errSample  []string
}

// newBook names channels after a run id, in the shape of Superset's channel
// ids (UUIDs), so that repeated runs never share a channel's history.
func newBook(runID uint32, channels int) *book {
	b := &book{
		names:      make([]string, channels),
		allocated:  make([]atomic.Int64, channels),
		subs:       make([]atomic.Int32, channels),
		failedByCh: make(map[int][]int64),
	}
	for i := range b.names {
		b.names[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", runID, i)
	}
	return b
}

// alloc hands out the next sequence number of channel ch.
func (b *book) alloc(ch int) int64 {
	b.total.Add(1)
	return b.allocated[ch].Add(1)
}

// allocatedTotal counts the events handed to publishers.
func (b *book) allocatedTotal() int64 { return b.total.Load() }

// sentTotal counts the events handed to publishers (for --max-events).
func (b *book) sentTotal() int64 { return b.total.Load() }

// queuedFailed counts events that failed before being sent.
func (b *book) queuedFailed() int64 { return b.unsent.Load() }

// last is the n of the last event of ch handed to a publisher.
func (b *book) last(ch int) int64 { return b.allocated[ch].Load() }

// fail records that event n of ch was not published.
func (b *book) fail(ch int, n int64, err error) {
	b.failed.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.failedByCh[ch]
	i, _ := slices.BinarySearch(s, n)
	b.failedByCh[ch] = slices.Insert(s, i, n)
	if len(b.errSample) < 5 && err != nil {
		msg := err.Error()
		if !slices.Contains(b.errSample, msg) {
			b.errSample = append(b.errSample, msg)
		}
	}
}

// failedIn counts the failed events of ch in [lo, hi].
func (b *book) failedIn(ch int, lo, hi int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.failedByCh[ch]
	if len(s) == 0 {
		return 0
	}
	i, _ := slices.BinarySearch(s, lo)
	j, found := slices.BinarySearch(s, hi)
	if found {
		j++
	}
	return int64(j - i)
}

// errors returns a few distinct publish errors.
func (b *book) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errSample)
}
