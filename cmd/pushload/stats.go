package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// phase is a stretch of a scenario with its own rate (a ramp step, the two
// halves of the slow scenario, …). Latency and deliveries are attributed to
// the phase in which the event was published, read from the event's send
// time, so that a late delivery still counts against the rate that caused
// it.
type phase struct {
	name  string
	rate  float64
	start time.Time
	// end is set when the phase stops publishing.
	end atomic.Int64

	hist *Histogram
	// published counts events handed to publishers; expected the
	// deliveries they are worth; received the expected deliveries that
	// arrived (first copies only).
	published atomic.Int64
	expected  atomic.Int64
	received  atomic.Int64
}

// stats holds what every scenario measures on the receiving side. It is
// safe for concurrent use.
type stats struct {
	mu     sync.Mutex
	phases []*phase // ordered by start; guarded by mu, read lock-free via list
	list   atomic.Pointer[[]*phase]

	// window collects the latencies of the current progress second.
	window atomic.Pointer[Histogram]

	// frames counts every event frame received (deliveries, duplicates
	// included); foreign counts frames without the tool's keys; wrongChannel
	// frames whose channel_id is not the socket's channel.
	frames       atomic.Int64
	fresh        atomic.Int64
	foreign      atomic.Int64
	wrongChannel atomic.Int64

	firstRecv atomic.Int64 // UnixNano of the first tool frame received
	lastRecv  atomic.Int64
}

func newStats() *stats {
	s := &stats{}
	s.list.Store(&[]*phase{})
	s.window.Store(NewHistogram())
	return s
}

// startPhase begins a phase at the given rate (events/s; 0: unpaced).
func (s *stats) startPhase(name string, rate float64) *phase {
	p := &phase{name: name, rate: rate, start: time.Now(), hist: NewHistogram()}
	s.mu.Lock()
	s.phases = append(s.phases, p)
	l := append([]*phase(nil), s.phases...)
	s.list.Store(&l)
	s.mu.Unlock()
	return p
}

// phaseAt returns the phase in which an event sent at tsNs was published
// (the first phase for anything earlier), or nil when there is none.
func (s *stats) phaseAt(tsNs int64) *phase {
	l := *s.list.Load()
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].start.UnixNano() <= tsNs {
			return l[i]
		}
	}
	if len(l) > 0 {
		return l[0]
	}
	return nil
}

// allPhases returns the phases so far.
func (s *stats) allPhases() []*phase { return *s.list.Load() }

// outstanding is the number of expected deliveries not yet received over
// all phases.
func (s *stats) outstanding() int64 {
	var n int64
	for _, p := range s.allPhases() {
		n += p.expected.Load() - p.received.Load()
	}
	return n
}

// total merges the phases' histograms.
func (s *stats) total() *Histogram {
	h := NewHistogram()
	for _, p := range s.allPhases() {
		h.Merge(p.hist)
	}
	return h
}

// swapWindow returns the current second's histogram and starts a new one.
func (s *stats) swapWindow() *Histogram { return s.window.Swap(NewHistogram()) }

// record accounts for one received tool frame.
func (s *stats) record(tsNs, now int64, fresh bool) {
	if s.firstRecv.Load() == 0 {
		s.firstRecv.CompareAndSwap(0, now)
	}
	s.lastRecv.Store(now)
	if !fresh {
		return
	}
	s.fresh.Add(1)
	lat := now - tsNs
	if p := s.phaseAt(tsNs); p != nil {
		p.received.Add(1)
		p.hist.Record(lat)
	}
	s.window.Load().Record(lat)
}
