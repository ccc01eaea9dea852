package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// TestRestartReplaysWhatWasPublishedWhileDown: history lives in the store,
// so a client that comes back after a gateway restart with its last_id gets
// the events published while the gateway was down.
func TestRestartReplaysWhatWasPublishedWhileDown(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	g1 := startGateway(t, gatewayOptions{storeDir: dir})
	c := g1.dial("r", "")
	s1 := g1.publish("r", `{"n":1}`)
	last := frameID(t, c.next(5*time.Second))
	if last != g1.log.ID(s1).String() {
		t.Fatalf("first frame %s", last)
	}
	epoch := g1.log.Epoch()
	g1.stop()
	if code := closeCode(c.waitClosed(5 * time.Second)); code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	if err := g1.nats.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// While the gateway is down another publisher writes to the store.
	ns, nc := embeddedtest.RunWith(t, embeddedtest.Options{StoreDir: dir})
	js, _ := jetstream.New(nc)
	elog, err := eventlog.Open(ctx, js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var missed []uint64
	for _, p := range []string{`{"n":2}`, `{"n":3}`} {
		res, err := elog.Append(ctx, "r", []byte(p), eventlog.AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		missed = append(missed, res.Seq)
	}
	nc.Close()
	if err := ns.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	g2 := startGateway(t, gatewayOptions{storeDir: dir})
	if g2.log.Epoch() != epoch {
		t.Fatalf("epoch changed across restart: %d -> %d", epoch, g2.log.Epoch())
	}
	back := g2.dial("r", last)
	equalIDs(t, "missed while down", back.collect(2, 5*time.Second), idsOf(g2, missed))
	back.expectNothing(100 * time.Millisecond)
	// The ring was warmed from the store: the replay did not need JetStream.
	if v := metricValue(t, g2, `pushbridge_replays_total{result="ok",source="ring"}`); v != 1 {
		t.Fatalf("ring replays %v, want 1", v)
	}
}
