package main

import (
	"context"
	"errors"
	"time"
)

// SlowResult is the slow-clients scenario's outcome.
type SlowResult struct {
	SlowClients int `json:"slow_clients"`
	// The reading clients' p99 while publishing without and then with the
	// slow clients connected, and the ratio.
	P99WithoutMs float64 `json:"p99_without_ms"`
	P99WithMs    float64 `json:"p99_with_ms"`
	P99Ratio     float64 `json:"p99_ratio"`
	// SlowClosed counts slow sockets the server had closed by the end;
	// SlowDraining those still delivering data queued before any close
	// when the probe gave up (undetermined); SlowOpen those open and
	// quiet. The server's own count, when it exports one, is in the
	// metric deltas (pushbridge_disconnects_total{reason="slow_client"}).
	SlowClosed   int `json:"slow_closed_by_server"`
	SlowDraining int `json:"slow_still_draining"`
	SlowOpen     int `json:"slow_still_open"`
	// Server RSS when the slow clients connected, its peak while they
	// were connected, and at the end.
	RSSAtSlowConnect int64 `json:"server_rss_at_slow_connect_bytes,omitempty"`
	RSSMax           int64 `json:"server_rss_max_bytes,omitempty"`
	RSSAfter         int64 `json:"server_rss_after_bytes,omitempty"`
}

// runSlow is the slow-clients scenario: the reading clients receive at
// --rate for half of --duration; then --slow clients that never read (with
// a small receive buffer) join the same channels and the rate goes on for
// the other half. It reports the reading clients' p99 in both halves and
// whether the server closed the slow clients.
func runSlow(ctx context.Context, r *runner) error {
	o := r.o
	if o.slowK <= 0 {
		return errors.New("slow needs --slow > 0")
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
	stop := r.progress(ctx, "slow", func() string { return "" })
	defer stop()
	half := o.duration / 2
	t0 := time.Now()
	a := r.st.startPhase("without slow", o.rate)
	r.pace(ctx, a, o.rate, half, 0, r.allChannels())
	r.waitPublished(ctx, o.drain)
	r.drain(ctx, o.drain)

	slow := r.pool.add(o.slowK, true)
	sr := r.pool.connect(ctx, slow, o.dialConc, false)
	if sr.Failed > 0 {
		r.note("%d slow clients could not connect", sr.Failed)
	}
	rssAtSlow := r.probe.rssOnly()
	r.rssMax.Store(rssAtSlow)
	b := r.st.startPhase("with slow", o.rate)
	r.pace(ctx, b, o.rate, half, 0, r.allChannels())
	pubSecs := time.Since(t0).Seconds()
	r.finishPublisher(o.drain)
	r.drain(ctx, o.drain)
	stop()
	after := r.probe.take(ctx)
	closed, draining, open := r.pool.probeClosed(ctx, slow, max(2*time.Second, o.drain))
	pa, pb := a.hist.Summary().P99Ms, b.hist.Summary().P99Ms
	s := &SlowResult{SlowClients: o.slowK, P99WithoutMs: pa, P99WithMs: pb, SlowClosed: closed, SlowDraining: draining, SlowOpen: open,
		RSSAtSlowConnect: rssAtSlow, RSSMax: r.rssMax.Load(), RSSAfter: after.rss}
	if pa > 0 {
		s.P99Ratio = pb / pa
	}
	r.res.Slow = s
	r.summarise([]*phase{a, b}, pubSecs)
	r.res.Server = r.serverSummary(before, after, 0)
	r.connSummary(cr, o.conns)
	return nil
}
