package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// TestLeaseDeadlineStopsPublishing: the leader's renewals stall (as in a
// paused process). It stops publishing once its lease would expire by its
// own clock, before another mirror may take the lease over; the standby
// then may lead. Entries flow throughout and arrive exactly once.
func TestLeaseDeadlineStopsPublishing(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	const ttl = time.Second
	release := make(chan struct{})
	stall := func(ctx context.Context) {
		select {
		case <-ctx.Done():
		case <-release:
		}
	}
	a := startMirrorWith(t, Config{Start: "all", LeaseTTL: ttl, Instance: "mirror-a"}, r.redis.Addr(), r.events, r.logs,
		func(m *Mirror) { m.renewHook = stall })
	a.waitState(t, "leader", 10*time.Second)
	leading := time.Now()
	r.start(Config{Start: "all", LeaseTTL: ttl, Instance: "mirror-b"})
	wr := startWriter(r.rdb, 5)
	waitLogged(t, r.logs, "ingest state changed", "lease expired")
	if took := time.Since(leading); took > ttl+time.Second {
		t.Fatalf("the leader noticed its lease expired %s after it began leading (TTL %s)", took, ttl)
	}
	close(release)
	w := wr.finish(t)
	waitStored(t, r.events, uint64(w.events), 30*time.Second)
	checkExactlyOnce(t, r.events, w)
}
