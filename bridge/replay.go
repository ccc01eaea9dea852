package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// A socket joins its channel in three steps that together deliver every
// event after its last_id exactly once and in order while events keep
// arriving (jetstream-notes §3):
//
//  1. Under the channel's shard lock, register the socket in the joining
//     state and read the dispatch cursor X. Every event of the channel
//     above X will reach the socket live and is held in its join buffer.
//  2. Replay the channel's events in (last_id, X]: from the ring when it
//     covers last_id, otherwise from JetStream up to the ring's coverage
//     and from the ring after it.
//  3. Under the socket's lock, queue the held live events above the last
//     one sent and switch to live delivery.
//
// Events travel to the one socket that asked; others on the channel see
// nothing of the replay.

// joinPlan is what step 1 decided.
type joinPlan struct {
	upTo uint64
	// ring holds the cached events to send after any JetStream part.
	ring []*event
	// jsAfter, jsUpTo bound the part read from JetStream, if jsNeeded.
	jsNeeded        bool
	jsAfter, jsUpTo uint64
	source          string
}

// register adds c to its channel and plans its replay. It returns false if
// the per-channel limit refuses the socket.
func (s *Server) register(c *conn, rp resumePoint) (joinPlan, bool) {
	sh := s.hub.shardOf(c.channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := s.hub.getLocked(sh, c.channel)
	if limit := s.cfg.MaxConnectionsPerChannel; limit > 0 && len(ch.conns) >= limit {
		s.hub.dropIfEmptyLocked(sh, ch)
		return joinPlan{}, false
	}
	ch.conns = append(ch.conns, c)
	// Counted and listed under the shard lock: unregister takes it before
	// it removes the socket, so the removal always follows this.
	s.registry.add(c)
	s.metrics.connections.Inc()
	plan := joinPlan{upTo: s.hub.cursor.Load(), source: "none"}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch rp.kind {
	case resumeNone, resumeUnusable:
		// Held like any join until the handshake is done.
		c.state = stateJoining
		return plan, true
	case resumeRedis:
		c.state = stateJoining
		plan.jsNeeded, plan.source = true, "time"
		return plan, true
	}
	after := rp.seq // resumeEpochReset: 0, everything the channel has
	c.state = stateJoining
	c.lastSeq = after
	if after >= plan.upTo {
		if after > plan.upTo {
			plan.source = "ahead"
		}
		return plan, true
	}
	cover := s.hub.coverageLocked(ch)
	if after >= cover {
		plan.ring = ch.eventsAfterLocked(after, plan.upTo)
		plan.source = "ring"
		return plan, true
	}
	plan.jsNeeded, plan.jsAfter, plan.jsUpTo = true, after, min(cover, plan.upTo)
	plan.ring = ch.eventsAfterLocked(cover, plan.upTo)
	plan.source = "jetstream"
	return plan, true
}

// replay runs steps 2 and 3 for a registered socket.
func (s *Server) replay(ctx context.Context, c *conn, rp resumePoint, plan joinPlan, started time.Time) {
	if rp.kind == resumeNone || rp.kind == resumeUnusable {
		s.finishJoin(c)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReplayTimeout)
	defer cancel()
	log := c.logger().With("last_id", rp.raw, "source", plan.source)
	var sent int
	var err error
	result := "ok"
	switch {
	case plan.source == "ahead":
		// The client saw more than this node has dispatched (another
		// node or region is ahead). Events up to its id will arrive live
		// and be dropped as duplicates; wait for them.
		if err = s.waitCursor(ctx, rp.seq); err != nil {
			result = s.aheadTimedOut(ctx, c, rp, plan, log)
			err = nil
		}
	case plan.jsNeeded && rp.kind == resumeRedis:
		sent, err = s.replayByRedisID(ctx, c, rp, plan.upTo)
	case plan.jsNeeded:
		sent, err = s.replayFromLog(ctx, c, plan.jsAfter, plan.jsUpTo)
	}
	if err == nil {
		var n int
		n, err = s.replayEvents(ctx, c, plan.ring)
		sent += n
	}
	if err != nil {
		if errors.Is(err, errConnClosed) {
			return
		}
		s.metrics.replays.WithLabelValues(plan.source, "error").Inc()
		log.Warn("replay failed; closing the socket so the client retries", "err", err, "sent", sent)
		c.closeWith(closeInternal, "replay failed: reconnect with last_id", "replay_error")
		return
	}
	held := s.finishJoin(c)
	if plan.jsNeeded && rp.kind == resumeSeq {
		// Checked once the socket is live, with everything it received
		// after last_id: from JetStream, from the ring and held live.
		if trimmed, why := s.trimmed(ctx, c.channel, rp.seq, sent+held); trimmed {
			result = "trimmed"
			s.metrics.replayTrimmed.Inc()
			log.Warn("channel history after last_id was trimmed: the client cannot be made whole", "why", why,
				"received", sent+held)
		}
	}
	s.metrics.replays.WithLabelValues(plan.source, result).Inc()
	s.metrics.replayedEvents.Add(float64(sent))
	s.metrics.replayDuration.Observe(time.Since(started).Seconds())
	log.Debug("replay done", "events", sent, "took", time.Since(started))
}

// aheadTimedOut decides what a socket whose last_id the node has not
// reached after the bounded wait gets, and returns the replay result. If
// the id exists at the origin, this node (or its regional mirror) lags:
// the client keeps its position and the events after it arrive live when
// the node catches up. If the origin's end cannot be learned (the link to
// the origin region is down), the id is taken to be real as well, since it
// carries the stream's epoch: resending events the client has would break
// exactly-once delivery. Only an id beyond the origin's end is replaced by
// the node's position, so the client is not starved until the stream
// reaches it; that is counted as an unusable last_id.
func (s *Server) aheadTimedOut(ctx context.Context, c *conn, rp resumePoint, plan joinPlan, log *slog.Logger) string {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.ReplayTimeout/5)
	defer cancel()
	head, err := s.events.Head(hctx)
	dispatched := s.hub.cursor.Load()
	switch {
	case err != nil:
		log.Warn("last_id is ahead of this node and the stream's end cannot be checked; keeping the client's position",
			"dispatched_seq", dispatched, "err", err)
		return "lagging"
	case rp.seq <= head:
		log.Warn("last_id is ahead of this node; it will catch up", "dispatched_seq", dispatched, "stream_head", head)
		return "lagging"
	}
	s.metrics.lastIDInvalid.WithLabelValues("ahead").Inc()
	log.Warn("last_id is beyond the stream's end; delivering from this node's position instead",
		"dispatched_seq", dispatched, "stream_head", head)
	c.mu.Lock()
	c.lastSeq = plan.upTo
	c.mu.Unlock()
	return "ahead_timeout"
}

// replayFromLog sends the channel's events in (after, upTo] read from
// JetStream (coalesced with other replays when many run at once).
func (s *Server) replayFromLog(ctx context.Context, c *conn, after, upTo uint64) (int, error) {
	events, err := s.coalescer.fetch(ctx, c.channel, after, upTo)
	if err != nil {
		return 0, err
	}
	return s.replayEvents(ctx, c, events)
}

// replayByRedisID resumes a client holding an id from the old Node server:
// it sends the channel's events whose mirrored Redis id is after last_id
// (events without one: stored after its time), up to upTo.
func (s *Server) replayByRedisID(ctx context.Context, c *conn, rp resumePoint, upTo uint64) (int, error) {
	select {
	case s.replaySem <- struct{}{}:
		defer func() { <-s.replaySem }()
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for a replay slot: %w", ctx.Err())
	}
	s.metrics.lastIDInvalid.WithLabelValues("redis_id").Inc()
	since := time.UnixMilli(int64(rp.redisMs)).Add(-s.cfg.ReplaySkew)
	var sent int
	var frames frameEncoder
	err := s.events.ReadFrom(ctx, c.channel, since, upTo, func(ev eventlog.Event) error {
		if rid := ev.Header.Get(eventlog.RedisIDHeader); rid != "" {
			if after, ok := redisIDAfter(rid, rp.redisMs, rp.redisSeq); ok && !after {
				return nil
			}
		} else if ev.Time.UnixMilli() <= int64(rp.redisMs) {
			return nil
		}
		e, _, err := frames.encode(s.id(ev.Seq), ev.Data)
		if err != nil {
			return nil
		}
		ok, err := s.queueReplayed(ctx, c, e)
		if ok {
			sent++
		}
		return err
	})
	return sent, err
}

// replayEvents sends cached events.
func (s *Server) replayEvents(ctx context.Context, c *conn, events []*event) (int, error) {
	var sent int
	for _, e := range events {
		ok, err := s.queueReplayed(ctx, c, e)
		if err != nil {
			return sent, err
		}
		if ok {
			sent++
		}
	}
	return sent, nil
}

// queueReplayed queues one replayed event, pacing the replay by the
// client: when half the socket's buffer is queued it waits for the writer.
func (s *Server) queueReplayed(ctx context.Context, c *conn, e *event) (bool, error) {
	half := s.cfg.MaxSocketBufferBytes / 2
	c.mu.Lock()
	if c.state == stateClosed || c.state == stateClosing {
		c.mu.Unlock()
		return false, errConnClosed
	}
	if e.seq <= c.lastSeq {
		c.mu.Unlock()
		return false, nil
	}
	full := c.queued+len(e.frame) > half
	c.mu.Unlock()
	if full {
		c.flush()
		if err := c.waitQueueBelow(ctx, half/2); err != nil {
			return false, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stateClosing {
		return false, errConnClosed
	}
	if e.seq <= c.lastSeq {
		return false, nil
	}
	c.lastSeq = e.seq
	if !c.queueLocked(e.frame) {
		return false, errConnClosed
	}
	return true, nil
}

// finishJoin queues the live events held during the replay and switches
// the socket to live delivery. It returns how many held events it queued.
func (s *Server) finishJoin(c *conn) int {
	c.mu.Lock()
	if c.state != stateJoining {
		c.mu.Unlock()
		return 0
	}
	held := c.joinBuf
	c.joinBuf, c.joinBufBytes = nil, 0
	queued := 0
	for _, e := range held {
		if e.seq <= c.lastSeq {
			continue
		}
		c.lastSeq = e.seq
		if !c.queueLocked(e.frame) {
			c.mu.Unlock()
			return queued
		}
		queued++
	}
	c.state = stateLive
	c.mu.Unlock()
	c.flush()
	return queued
}

// waitCursor waits until the dispatcher has passed seq.
func (s *Server) waitCursor(ctx context.Context, seq uint64) error {
	wait := s.cfg.ReplayTimeout / 5
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for s.hub.cursor.Load() < seq {
		select {
		case <-s.cursorSig.wait():
		case <-timer.C:
			return fmt.Errorf("%w: dispatched %d, want %d after %s", errLastIDAhead, s.hub.cursor.Load(), seq, wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// trimmed reports whether events of channel after lastSeq may have been
// removed by the stream's limits before the client got them; received is
// how many of the channel's events after lastSeq the socket was sent
// (replayed from JetStream and the ring, and held live while it joined).
//
// A channel's retained events are always a suffix of its history (limits
// remove the oldest; single deletes are denied), so if the event at
// lastSeq is still stored, nothing after it was removed. If it is gone and
// the stream's first sequence is past lastSeq+1, the age or total limits
// removed what followed it, possibly events of the channel. Otherwise only
// the per-channel limit removed anything, and it removes an event after
// lastSeq only once the channel holds MaxMsgsPerChannel events newer than
// it; from then on the channel always holds that many, all after lastSeq,
// and every one of them reaches the socket (from JetStream or the ring if
// stored when the replay read, held live if stored later), so received is
// at least the limit. The converse is not exact: JetStream keeps no trace
// of a removed event's channel, so exactly MaxMsgsPerChannel events after
// lastSeq, nothing lost, reads the same as more, and is reported as
// possibly trimmed.
func (s *Server) trimmed(ctx context.Context, channel string, lastSeq uint64, received int) (bool, string) {
	if lastSeq == 0 {
		st, err := s.events.State(ctx)
		if err == nil && st.FirstSeq > 1 {
			return true, fmt.Sprintf("the stream starts at %d", st.FirstSeq)
		}
		return false, ""
	}
	ev, err := s.events.Msg(ctx, lastSeq)
	if err == nil && ev.Channel == channel {
		return false, ""
	}
	if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
		return true, "cannot check: " + err.Error()
	}
	st, err := s.events.State(ctx)
	if err != nil {
		return true, "cannot check: " + err.Error()
	}
	if lastSeq+1 < st.FirstSeq {
		return true, fmt.Sprintf("the stream now starts at %d, after last_id", st.FirstSeq)
	}
	if limit := s.events.Config().MaxMsgsPerChannel; int64(received) >= limit {
		return true, fmt.Sprintf("the event at last_id is gone and the channel had at least its limit of %d events after it", limit)
	}
	return false, ""
}
