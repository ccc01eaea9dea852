package main

import "sort"

// maxGaps bounds the missing ranges a tracker remembers. A client that
// loses events in more separate bursts than this is reported with
// approximate accounting (overflow) instead of growing without bound.
const maxGaps = 4096

// span is an inclusive range of per-channel sequence numbers.
type span struct{ lo, hi int64 }

// tracker accounts for the events one logical client (one browser tab, over
// all its reconnects) received on its channel, by the per-channel sequence
// number n the load tool puts in every event, and by the frame id.
//
// Events with n <= base were published before the client subscribed and
// are not expected; the client may still receive them ("early"). Every
// event above base is expected exactly once and in order. The tracker keeps
// the highest n seen and the ranges below it not yet seen, so its memory is
// constant while nothing is lost.
//
// A tracker is not safe for concurrent use; its client's lock guards it.
type tracker struct {
	base int64
	max  int64
	gaps []span
	// overflow is set once more than maxGaps ranges were missing at once;
	// later fills of forgotten ranges then count as duplicates.
	overflow bool

	received   int64 // frames carrying n
	fresh      int64 // expected events received for the first time
	early      int64
	duplicates int64
	outOfOrder int64

	// By frame id: ids must increase strictly on one connection and across
	// its resumes.
	idA, idB   uint64
	idSeen     bool
	idRegress  int64 // id at or below the previous one
	idRepeat   int64 // id equal to the previous one
	idUnparsed int64
}

func newTracker(base int64) tracker { return tracker{base: base, max: base} }

// observe accounts for one received n and reports whether it was an expected
// event received for the first time.
func (t *tracker) observe(n int64) bool {
	t.received++
	switch {
	case n <= t.base:
		t.early++
		return false
	case n == t.max+1:
		t.max = n
	case n > t.max+1:
		if len(t.gaps) < maxGaps {
			t.gaps = append(t.gaps, span{t.max + 1, n - 1})
		} else {
			t.overflow = true
		}
		t.max = n
	default: // n <= t.max: a gap filled late, or a duplicate
		if t.fill(n) {
			t.outOfOrder++
		} else {
			t.duplicates++
			return false
		}
	}
	t.fresh++
	return true
}

// fill removes n from the missing ranges and reports whether it was missing.
func (t *tracker) fill(n int64) bool {
	i := sort.Search(len(t.gaps), func(i int) bool { return t.gaps[i].hi >= n })
	if i == len(t.gaps) || t.gaps[i].lo > n {
		return false
	}
	g := t.gaps[i]
	switch {
	case g.lo == g.hi:
		t.gaps = append(t.gaps[:i], t.gaps[i+1:]...)
	case n == g.lo:
		t.gaps[i].lo++
	case n == g.hi:
		t.gaps[i].hi--
	default:
		t.gaps = append(t.gaps, span{})
		copy(t.gaps[i+2:], t.gaps[i+1:])
		t.gaps[i] = span{g.lo, n - 1}
		t.gaps[i+1] = span{n + 1, g.hi}
	}
	return true
}

// observeID accounts for a frame id.
func (t *tracker) observeID(id []byte) {
	a, b, ok := parseID(id)
	if !ok {
		t.idUnparsed++
		return
	}
	if t.idSeen {
		switch {
		case a == t.idA && b == t.idB:
			t.idRepeat++
			t.idRegress++
			return
		case a < t.idA || (a == t.idA && b < t.idB):
			t.idRegress++
			return
		}
	}
	t.idA, t.idB, t.idSeen = a, b, true
}

// wholeUpTo reports whether every event in (base, upTo] has been received.
func (t *tracker) wholeUpTo(upTo int64) bool {
	if t.max < upTo {
		return false
	}
	return len(t.gaps) == 0 || t.gaps[0].lo > upTo
}

// missing counts the expected events in (base, upTo] not received, less
// those that failedIn counts in a range (publishes that failed; nil: none).
func (t *tracker) missing(upTo int64, failedIn func(lo, hi int64) int64) int64 {
	var m int64
	count := func(lo, hi int64) {
		m += hi - lo + 1
		if failedIn != nil {
			m -= failedIn(lo, hi)
		}
	}
	for _, g := range t.gaps {
		if g.lo > upTo {
			break
		}
		count(g.lo, min(g.hi, upTo))
	}
	if upTo > t.max {
		count(t.max+1, upTo)
	}
	return m
}
