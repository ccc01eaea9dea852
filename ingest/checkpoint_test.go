package ingest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// TestFailedStartKeepsCheckpoint: a term that fails before it reads
// anything (Redis away) leaves the checkpoint as it was — its position,
// revision and time — instead of stamping an old checkpoint "now".
func TestFailedStartKeepsCheckpoint(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	xadd(t, r.rdb, w, 3, 10, 0)
	waitStored(t, r.events, 10, 20*time.Second)
	run.stop(t)
	kv := ingestKV(t, r.nc)
	cp, _ := getCheckpoint(t, kv)
	cp.At = time.Now().Add(-time.Hour).UnixMilli() // written long ago
	putCheckpoint(t, kv, cp)
	_, rev := getCheckpoint(t, kv)

	r.redis.Stop()
	run2 := startMirrorWith(t, Config{Start: "all"}, r.redis.Addr(), r.events, r.logs, fastFailRedis(t, r.redis.Addr()))
	waitFor(t, "three failed terms", 20*time.Second, func() bool {
		return run2.counter(t, "pushbridge_ingest_redis_errors_total", "") >= 3
	})
	got, gotRev := getCheckpoint(t, kv)
	if got.At != cp.At || got.ID != cp.ID || gotRev != rev {
		t.Fatalf("terms that read nothing rewrote the checkpoint: %+v rev %d, was %+v rev %d", got, gotRev, cp, rev)
	}
	r.redis.Restart()
	xadd(t, r.rdb, w, 3, 10, 10)
	waitStored(t, r.events, 20, 30*time.Second)
	checkExactlyOnce(t, r.events, w)
}

// TestCheckpointFarBehind: the checkpoint is 5,900 entries behind what the
// stream holds (as after checkpoint writes failed for a while) and the
// stream's dedupe window no longer covers any of them. Whatever the
// checkpoint's age says, the mirror recognises every stored entry and
// stores nothing twice.
func TestCheckpointFarBehind(t *testing.T) {
	for _, tc := range []struct {
		name string
		age  time.Duration
	}{{"written just now", 0}, {"written an hour ago", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			const window = time.Second
			r := newRig(t, eventlog.Config{Duplicates: window})
			run := r.start(Config{Start: "all"})
			w := newWritten()
			ids := xaddMany(t, r.rdb, w, 300, 6000, 0)
			waitStored(t, r.events, 6000, 60*time.Second)
			storedAt := time.Now()
			run.stop(t)
			// The dedupe window (measured from each store) is over for all.
			time.Sleep(time.Until(storedAt.Add(window + 300*time.Millisecond)))
			putCheckpoint(t, ingestKV(t, r.nc), checkpoint{ID: ids[99], At: time.Now().Add(-tc.age).UnixMilli(), Holder: "test"})

			run2 := r.start(Config{Start: "all"})
			xaddMany(t, r.rdb, w, 300, 50, 6000)
			waitStored(t, r.events, 6050, 60*time.Second)
			checkExactlyOnce(t, r.events, w)
			waitCounter(t, run2, "pushbridge_ingest_duplicates_total", "", 5900)
		})
	}
}

// stealLease makes another mirror the lease holder for a minute.
func stealLease(t *testing.T, kv jetstream.KeyValue, holder string) {
	t.Helper()
	b, _ := json.Marshal(lease{Holder: holder, Expires: time.Now().Add(time.Minute).UnixMilli()})
	if _, err := kv.Put(context.Background(), kvKey("lease.", prefix+"full"), b); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointNeverMovesBackwards: another mirror's checkpoint further on
// is kept, both by a leader that finds it when it saves and by a deposed
// leader leaving (whose unsaved position is behind it).
func TestCheckpointNeverMovesBackwards(t *testing.T) {
	ahead := checkpoint{ID: "99999999999999-0", At: time.Now().UnixMilli(), Holder: "another-mirror"}
	t.Run("leader", func(t *testing.T) {
		r := newRig(t, eventlog.Config{})
		run := r.start(Config{Start: "all"})
		w := newWritten()
		xadd(t, r.rdb, w, 3, 10, 0)
		waitStored(t, r.events, 10, 20*time.Second)
		kv := ingestKV(t, r.nc)
		putCheckpoint(t, kv, ahead)
		xadd(t, r.rdb, w, 3, 10, 10)
		waitStored(t, r.events, 20, 20*time.Second)
		waitLogged(t, r.logs, "the checkpoint was written by another mirror", "checkpoint="+ahead.ID)
		run.stop(t)
		if cp, _ := getCheckpoint(t, kv); cp.ID != ahead.ID {
			t.Fatalf("checkpoint moved back to %s (written by %s)", cp.ID, cp.Holder)
		}
		checkExactlyOnce(t, r.events, w)
	})
	t.Run("deposed leader", func(t *testing.T) {
		r := newRig(t, eventlog.Config{})
		// Nothing is saved while it runs: its position is saved, if at
		// all, when it stops leading.
		run := r.start(Config{Start: "all", LeaseTTL: time.Second, CheckpointInterval: time.Hour})
		w := newWritten()
		xadd(t, r.rdb, w, 3, 10, 0)
		waitStored(t, r.events, 10, 20*time.Second)
		kv := ingestKV(t, r.nc)
		stealLease(t, kv, "thief")
		putCheckpoint(t, kv, ahead)
		run.waitState(t, "standby (lease held by thief)", 10*time.Second)
		if cp, _ := getCheckpoint(t, kv); cp.ID != ahead.ID {
			t.Fatalf("the deposed leader moved the checkpoint back to %s", cp.ID)
		}
	})
}
