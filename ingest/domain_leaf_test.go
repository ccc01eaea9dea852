package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// TestMirrorResumesAcrossDomains: a mirror connected to an edge leaf node
// (its own JetStream domain) with the event log in the hub's domain
// (nats.domain "hub") resumes from its checkpoint, and the resume's overlap
// check asks the hub's stream, not the edge's domain (which has none).
func TestMirrorResumesAcrossDomains(t *testing.T) {
	leafPort := embeddedtest.FreePort(t)
	hub := embeddedtest.StartConfig(t, embedded.Config{Name: "hub", Domain: "hub", Listen: "127.0.0.1:-1",
		LeafNode: embedded.LeafNodeConfig{Listen: fmt.Sprintf("127.0.0.1:%d", leafPort)}})
	edge := embeddedtest.StartConfig(t, embedded.Config{Name: "edge", Domain: "edge",
		LeafNode: embedded.LeafNodeConfig{Remotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort)}}})
	deadline := time.Now().Add(10 * time.Second)
	for hub.NATS().NumLeafNodes() != 1 || edge.NATS().NumLeafNodes() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("leaf node did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc, err := edge.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := eventlog.NewJetStream(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	events, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rd := redistest.Start(t)
	logs := &syncBuffer{}
	cfg := Config{Conn: nc, Domain: "hub", Start: "all"}

	w := newWritten()
	first := startMirror(t, cfg, rd.Addr(), events, logs)
	first.waitState(t, "leader", 20*time.Second)
	xadd(t, rd.Client(), w, 3, 20, 0)
	waitStored(t, events, 20, 20*time.Second)
	first.stop(t)

	xadd(t, rd.Client(), w, 3, 10, 20)
	second := startMirror(t, cfg, rd.Addr(), events, logs)
	second.waitState(t, "leader", 20*time.Second)
	waitStored(t, events, 30, 20*time.Second)
	checkExactlyOnce(t, events, w)
}
