package bridge

import "sync/atomic"

// ring caches the events the node dispatched most recently, so that a
// reconnecting client is usually replayed from memory. Each channel keeps
// its own events in order (channel.events, read by replays under the shard
// lock); all cached events are also linked oldest to newest, which is the
// order they are evicted in when the ring is over its byte budget.
//
// The invariant replays rely on: every event with a sequence at or below
// floor has left the ring (or was never in it), and every event of a
// channel above max(floor, channel.capFloor) that the node dispatched is in
// channel.events. The dispatcher goroutine owns the links and the counters;
// floor is read by replays.
type ring struct {
	maxBytes   int64
	perChannel int

	oldest, newest *event
	bytes          int64
	count          int

	floor atomic.Uint64
}

// addLocked caches ev as its channel's newest event and applies the
// per-channel cap. Called by the dispatcher with the channel's shard lock.
func (h *hub) ringAddLocked(ch *channel, ev *event) {
	r := &h.ring
	ev.ch = ch
	ch.events = append(ch.events, ev)
	if len(ch.events)-ch.head > r.perChannel {
		old := ch.events[ch.head]
		ch.events[ch.head] = nil
		ch.head++
		ch.capFloor = old.seq
		r.unlink(old)
	}
	ch.compact()
	// Link at the newest end.
	ev.older = r.newest
	if r.newest != nil {
		r.newest.newer = ev
	} else {
		r.oldest = ev
	}
	r.newest = ev
	r.bytes += int64(len(ev.frame))
	r.count++
}

func (r *ring) unlink(ev *event) {
	if ev.older != nil {
		ev.older.newer = ev.newer
	} else {
		r.oldest = ev.newer
	}
	if ev.newer != nil {
		ev.newer.older = ev.older
	} else {
		r.newest = ev.older
	}
	ev.older, ev.newer = nil, nil
	r.bytes -= int64(len(ev.frame))
	r.count--
}

// compact reclaims the dead front of the channel's slice.
func (ch *channel) compact() {
	if ch.head > 32 && ch.head*2 > len(ch.events) {
		n := copy(ch.events, ch.events[ch.head:])
		clear(ch.events[n:])
		ch.events = ch.events[:n]
		ch.head = 0
	}
}

// ringEvict drops the oldest events until the ring is within its byte
// budget. Called by the dispatcher without locks held.
func (h *hub) ringEvict() {
	r := &h.ring
	for r.bytes > r.maxBytes && r.oldest != nil {
		ev := r.oldest
		ch := ev.ch
		sh := h.shardOf(ch.name)
		sh.mu.Lock()
		// Publish the new floor before the event disappears, under the
		// lock a replay of this channel holds when it reads both.
		r.floor.Store(ev.seq)
		if ch.head < len(ch.events) && ch.events[ch.head] == ev {
			ch.events[ch.head] = nil
			ch.head++
			if ch.head == len(ch.events) {
				ch.events, ch.head = nil, 0
			}
		}
		h.dropIfEmptyLocked(sh, ch)
		sh.mu.Unlock()
		r.unlink(ev)
		ev.ch = nil
	}
}
