package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// TestMirrorAddressesItsDomain: the mirror keeps its lease and checkpoint
// in the JetStream domain it is given (nats.domain), not in whichever
// domain its connection reaches first.
func TestMirrorAddressesItsDomain(t *testing.T) {
	_, nc := embeddedtest.RunWith(t, embeddedtest.Options{Domain: "hub"})
	events := openEvents(t, nc, eventlog.Config{})
	rd := redistest.Start(t)
	logs := &syncBuffer{}

	elsewhere := startMirror(t, Config{Conn: nc, Domain: "elsewhere", LeaseTTL: time.Second}, rd.Addr(), events, logs)
	hub := startMirror(t, Config{Conn: nc, Domain: "hub", Start: "all"}, rd.Addr(), events, logs)
	hub.waitState(t, "leader", 20*time.Second)
	w := newWritten()
	xadd(t, rd.Client(), w, 3, 30, 0)
	waitStored(t, events, 30, 20*time.Second)
	checkExactlyOnce(t, events, w)
	if ok, s := elsewhere.m.Ready(); ok || !strings.Contains(s, "bucket") {
		t.Fatalf("a mirror given a domain no server has: ready %v, %q; want not ready, naming its bucket", ok, s)
	}
}
