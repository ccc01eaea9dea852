package eventlog

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// TestOpenRetriesUnansweredRequests: a JetStream cluster without a meta
// leader yet leaves API requests unanswered. Open must give each attempt
// its own deadline and try again, not spend its whole budget on the first
// request (a fresh 3-node cluster then never opened its stream).
func TestOpenRetriesUnansweredRequests(t *testing.T) {
	_, nc := embeddedtest.Run(t)
	var requests atomic.Int32
	// An API prefix nobody serves but this silent subscriber.
	sub, err := nc.Subscribe("$SILENT.API.>", func(*nats.Msg) { requests.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, err := jetstream.NewWithAPIPrefix(nc, "$SILENT.API")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Open(context.Background(), js, Config{CreateTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("opened a stream nobody answered for")
	}
	if n := requests.Load(); n < 2 {
		t.Fatalf("%d attempt(s) in %s, want a retry after an unanswered request (err %v)", n, time.Since(start), err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Open took %s with a 2s budget", d)
	}
}
