package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

func freeAddr(t *testing.T) string { return embeddedtest.FreeAddr(t) }

// TestNATSUnavailableForAWhile: the NATS server goes away mid-stream and
// comes back on the same address and store; the mirror resumes, exactly
// once and in order, without stalling.
func TestNATSUnavailableForAWhile(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	srv := embeddedtest.Start(t, embeddedtest.Options{Listen: addr, StoreDir: dir})
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	events := openEvents(t, nc, eventlog.Config{})
	red := redistest.Start(t)
	rdb := red.Client()
	logs := &syncBuffer{}
	run := startMirror(t, Config{Start: "all", LeaseTTL: 2 * time.Second}, red.Addr(), events, logs)
	w := newWritten()
	xadd(t, rdb, w, 4, 200, 0)
	waitStored(t, events, 200, 20*time.Second)

	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	xadd(t, rdb, w, 4, 300, 200) // published while NATS is down
	embeddedtest.Start(t, embeddedtest.Options{Listen: addr, StoreDir: dir})
	xadd(t, rdb, w, 4, 100, 500)
	waitStored(t, events, 600, 60*time.Second)
	checkExactlyOnce(t, events, w)
	if ok, detail := run.m.Ready(); !ok {
		t.Fatalf("mirror not ready after NATS came back: %s", detail)
	}
}
