package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReconnectResult is the reconnect storm's outcome.
type ReconnectResult struct {
	Clients int              `json:"clients"`
	Behind  int              `json:"behind"`
	Rounds  []ReconnectRound `json:"rounds"`
	// PerClient and Replay summarise the per-client times over all rounds.
	PerClient LatencySummary `json:"per_client_whole"`
	Replay    LatencySummary `json:"per_client_replay_after_handshake"`
}

// ReconnectRound is one storm.
type ReconnectRound struct {
	Round   int `json:"round"`
	Clients int `json:"clients"`
	// Behind is the number of events published to each affected channel
	// while its clients were away.
	Behind    int   `json:"behind"`
	Published int64 `json:"published"`
	// DialMs is how long the handshakes took, all of them; AllWholeMs
	// the time from the first dial until the last client had every event
	// it had missed.
	DialMs     float64 `json:"dial_ms"`
	AllWholeMs float64 `json:"all_whole_ms"`
	// PerClient is each client's time from the storm's start until it
	// was whole; Replay its time from its own completed handshake.
	PerClient    LatencySummary `json:"per_client_whole"`
	Replay       LatencySummary `json:"per_client_replay_after_handshake"`
	NotWhole     int            `json:"not_whole"`
	DialFailures int            `json:"dial_failures"`
}

// runReconnect is the reconnect storm: open every connection and give each
// client an event (so it has a last id); then, per round, drop K clients at
// once, publish --behind events to each of their channels, and reconnect
// them all at once with ?last_id= of their last frame. A client is whole
// when it has every event of its channel up to the last one published
// before the storm; the round reports when all were whole. A live tail
// then checks that delivery goes on; lost and duplicated events are counted
// over the whole run.
func runReconnect(ctx context.Context, r *runner) error {
	o := r.o
	k := o.reconnectK
	if k <= 0 || k > o.conns {
		k = o.conns
	}
	if o.behind < 0 || o.rounds < 1 {
		return errors.New("reconnect needs --behind >= 0 and --rounds >= 1")
	}
	idxs := r.pool.add(o.conns, false)
	cr := r.pool.connect(ctx, idxs, o.dialConc, false)
	r.connSummary(cr, o.conns)
	if cr.Connected == 0 {
		return errors.New("no connection could be opened")
	}
	sleep(ctx, o.settle)
	if err := r.startPublisher(ctx); err != nil {
		return err
	}
	before := r.probe.take(ctx)
	stop := r.progress(ctx, "reconnect", nil)
	defer stop()

	// Warm: one event per channel, so that every client has a last id.
	warm := r.st.startPhase("warm", o.rate)
	t0 := time.Now()
	r.pace(ctx, warm, o.rate, o.duration, int64(o.channels), r.allChannels())
	r.waitPublished(ctx, o.drain)
	if out := r.drain(ctx, o.drain); out > 0 {
		r.note("warm-up: %d deliveries still missing before the storm", out)
	}
	phases := []*phase{warm}

	storm := idxs[:k]
	seen := make(map[int]bool)
	var chans []int
	for _, i := range storm {
		if ch := r.pool.clients[i].ch; !seen[ch] {
			seen[ch] = true
			chans = append(chans, ch)
		}
	}
	all, allReplay := NewHistogram(), NewHistogram()
	rc := &ReconnectResult{Clients: k, Behind: o.behind}
	for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
		r.pool.drop(storm)
		ph := r.st.startPhase(fmt.Sprintf("behind %d", round), o.rate)
		r.pace(ctx, ph, o.rate, o.duration, int64(o.behind*len(chans)), chans)
		r.waitPublished(ctx, o.drain)
		phases = append(phases, ph)
		// Let the server take the events in before the storm, so that the
		// round measures replay, not ingestion.
		sleep(ctx, o.settle)

		start := time.Now()
		for _, i := range storm {
			c := r.pool.clients[i]
			c.mu.Lock()
			c.resuming, c.resumeTarget, c.resumeStart, c.resumedAt = true, r.bk.last(c.ch), start.UnixNano(), 0
			c.mu.Unlock()
		}
		dial := r.pool.connect(ctx, storm, o.reconnectConc, true)
		rd := ReconnectRound{Round: round, Clients: k, Behind: o.behind, Published: ph.published.Load(),
			DialMs: float64(time.Since(start)) / 1e6, DialFailures: dial.Failed}
		h, hr := NewHistogram(), NewHistogram()
		notWhole := r.waitWhole(ctx, storm, o.drain)
		var last int64
		for _, i := range storm {
			c := r.pool.clients[i]
			c.mu.Lock()
			if c.resumedAt > 0 {
				d := c.resumedAt - start.UnixNano()
				h.Record(d)
				all.Record(d)
				last = max(last, d)
				if c.resumeDialed > 0 {
					hr.Record(c.resumedAt - c.resumeDialed)
					allReplay.Record(c.resumedAt - c.resumeDialed)
				}
			}
			c.resuming, c.resumeDialed = false, 0
			c.mu.Unlock()
		}
		rd.NotWhole = notWhole
		rd.PerClient = h.Summary()
		rd.Replay = hr.Summary()
		if notWhole == 0 {
			rd.AllWholeMs = float64(last) / 1e6
		} else {
			rd.AllWholeMs = -1
			r.note("round %d: %d clients not whole after %s", round, notWhole, o.drain)
		}
		rc.Rounds = append(rc.Rounds, rd)
	}

	// Live tail: delivery goes on after the storm.
	tail := r.st.startPhase("live tail", o.rate)
	tailFor := min(o.duration, 2*time.Second)
	r.pace(ctx, tail, o.rate, tailFor, 0, r.allChannels())
	phases = append(phases, tail)
	pubSecs := time.Since(t0).Seconds()
	r.finishPublisher(o.drain)
	r.drain(ctx, o.drain)
	stop()
	after := r.probe.take(ctx)
	rc.PerClient = all.Summary()
	rc.Replay = allReplay.Summary()
	r.res.Reconnect = rc
	r.summarise(phases, pubSecs)
	// Replayed events carry their publish time: their "latency" is the
	// outage. Latency is reported for the live tail only.
	l := tail.hist.Summary()
	r.res.Latency = &l
	r.res.Server = r.serverSummary(before, after, 0)
	r.connSummary(cr, o.conns)
	return nil
}

// waitWhole waits until every client in idxs is whole, at most timeout,
// and returns how many are not.
func (r *runner) waitWhole(ctx context.Context, idxs []int, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	pending := append([]int(nil), idxs...)
	for {
		rest := pending[:0]
		for _, i := range pending {
			c := r.pool.clients[i]
			c.mu.Lock()
			done := c.resumedAt > 0 || c.tr.wholeUpTo(c.resumeTarget)
			if done && c.resumedAt == 0 {
				// Nothing was missed: whole on connecting.
				c.resumedAt = time.Now().UnixNano()
			}
			c.mu.Unlock()
			if !done {
				rest = append(rest, i)
			}
		}
		pending = rest
		if len(pending) == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return len(pending)
		case <-tick.C:
		}
	}
}
