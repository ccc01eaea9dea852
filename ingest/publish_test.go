package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// TestStreamRefusalIsRetriedNotSkipped: while the stream refuses every
// publish (here 10060 "expected stream does not match": another stream
// took over the subjects), entries are not skipped: the mirror reports the
// error in its state and retries, and once the stream is repaired they all
// arrive.
func TestStreamRefusalIsRetriedNotSkipped(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	xadd(t, r.rdb, w, 3, 5, 0)
	waitStored(t, r.events, 5, 20*time.Second)

	ctx := context.Background()
	js, _ := jetstream.New(r.nc)
	st, err := js.Stream(ctx, "PUSHBRIDGE")
	if err != nil {
		t.Fatal(err)
	}
	orig := st.CachedInfo().Config
	moved := orig
	moved.Subjects = []string{"elsewhere.>"}
	if _, err := js.UpdateStream(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"push.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	xadd(t, r.rdb, w, 3, 5, 5)
	waitLogged(t, r.logs, "ingest state changed", "expected stream does not match")
	for _, reason := range []string{skipTooLarge, "rejected_by_stream"} {
		if got := run.counter(t, "pushbridge_ingest_entries_skipped_total", reason); got != 0 {
			t.Fatalf("%v entries skipped as %s while the stream was misconfigured", got, reason)
		}
	}

	if err := js.DeleteStream(ctx, "OTHER"); err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateStream(ctx, orig); err != nil {
		t.Fatal(err)
	}
	waitStored(t, r.events, 10, 30*time.Second)
	checkExactlyOnce(t, r.events, w)
}

// TestOverMaxPayloadIsSkipped: stream.maxMsgSize above the server's
// max_payload (1 MiB here) lets an entry through the size check that the
// connection cannot send. It is skipped as too_large, once, and the
// entries after it are mirrored.
func TestOverMaxPayloadIsSkipped(t *testing.T) {
	r := newRig(t, eventlog.Config{MaxMsgSize: 2 << 20})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	xadd(t, r.rdb, w, 3, 3, 0)
	big := `{"channel_id": "chan-0", "pad": "` + strings.Repeat("x", 1536<<10) + `"}`
	if err := r.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: prefix + "full", Values: []any{"data", big}}).Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, r.rdb, w, 3, 3, 3)
	waitStored(t, r.events, 6, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
	waitCounter(t, run, "pushbridge_ingest_entries_skipped_total", skipTooLarge, 1)
	waitLogged(t, r.logs, "stream.maxMsgSize exceeds the NATS server's max_payload")
}
