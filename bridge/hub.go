package bridge

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// numShards spreads channels over locks so that joins, leaves and the
// dispatcher rarely wait for each other.
const numShards = 64

// hub maps channels to their sockets and their recent events. The
// dispatcher is its only writer of events; joins and leaves add and remove
// sockets.
type hub struct {
	seed   maphash.Seed
	shards [numShards]shard
	ring   ring

	// cursor is the sequence of the last event dispatched. It is stored
	// under the shard lock of that event's channel, so a socket registered
	// under the same lock knows exactly which of its channel's events it
	// will receive live (those above the cursor) and which it must replay.
	cursor atomic.Uint64

	channels    atomic.Int64
	connections atomic.Int64
}

type shard struct {
	mu       sync.Mutex
	channels map[string]*channel
}

// channel is one channel on this node: its sockets and its recent events.
// Guarded by its shard's lock.
type channel struct {
	name  string
	conns []*conn
	// events are the channel's most recent events in sequence order;
	// events[head:] are live entries.
	events []*event
	head   int
	// capFloor is the sequence of the newest event this channel's ring
	// dropped to stay within RingPerChannel.
	capFloor uint64
}

func newHub(ringBytes int64, perChannel int) *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channel)
	}
	h.ring = ring{maxBytes: ringBytes, perChannel: perChannel}
	return h
}

func (h *hub) shardOf(name string) *shard {
	return &h.shards[maphash.String(h.seed, name)%numShards]
}

// getLocked returns the channel, creating it. The shard lock is held.
func (h *hub) getLocked(sh *shard, name string) *channel {
	ch := sh.channels[name]
	if ch == nil {
		ch = &channel{name: name}
		sh.channels[name] = ch
		h.channels.Add(1)
	}
	return ch
}

// dropIfEmptyLocked forgets a channel with no sockets and no events. The
// shard lock is held.
func (h *hub) dropIfEmptyLocked(sh *shard, ch *channel) {
	if len(ch.conns) == 0 && ch.head == len(ch.events) {
		if sh.channels[ch.name] == ch {
			delete(sh.channels, ch.name)
			h.channels.Add(-1)
		}
	}
}

// removeConnLocked takes c off its channel. The shard lock is held.
func (h *hub) removeConnLocked(sh *shard, c *conn) bool {
	ch := sh.channels[c.channel]
	if ch == nil {
		return false
	}
	for i, x := range ch.conns {
		if x == c {
			last := len(ch.conns) - 1
			ch.conns[i] = ch.conns[last]
			ch.conns[last] = nil
			ch.conns = ch.conns[:last]
			if len(ch.conns) == 0 {
				ch.conns = nil
			}
			h.dropIfEmptyLocked(sh, ch)
			return true
		}
	}
	return false
}

// coverage returns the sequence after which the channel's ring holds every
// event of the channel the node has dispatched: all events of the channel
// above it, up to the cursor, are in ch.events. The shard lock is held;
// ch may be nil for a channel the node holds nothing of.
func (h *hub) coverageLocked(ch *channel) uint64 {
	floor := h.ring.floor.Load()
	if ch != nil && ch.capFloor > floor {
		return ch.capFloor
	}
	return floor
}

// eventsAfterLocked returns the channel's ring events with after < seq <=
// upTo. The shard lock is held.
func (ch *channel) eventsAfterLocked(after, upTo uint64) []*event {
	if ch == nil {
		return nil
	}
	live := ch.events[ch.head:]
	// Binary search for the first event above after.
	lo, hi := 0, len(live)
	for lo < hi {
		mid := (lo + hi) / 2
		if live[mid].seq <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	var out []*event
	for _, ev := range live[lo:] {
		if ev.seq > upTo {
			break
		}
		out = append(out, ev)
	}
	return out
}
