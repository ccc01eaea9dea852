package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

func TestMirrorsEveryEventInOrder(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	w := newWritten()
	xadd(t, r.rdb, w, 7, 300, 0) // before the mirror: "all" backfills them
	run := r.start(Config{Start: "all"})
	xadd(t, r.rdb, w, 7, 300, 300)
	waitStored(t, r.events, 600, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
	waitCounter(t, run, "pushbridge_ingest_entries_published_total", "", 600)
	if got := run.counter(t, "pushbridge_ingest_leader", ""); got != 1 {
		t.Fatalf("leader gauge %v", got)
	}
	if ok, detail := run.m.Ready(); !ok || !strings.Contains(detail, "leader") {
		t.Fatalf("ready %v %q", ok, detail)
	}
}

func TestStartNewSkipsHistory(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	old := newWritten()
	xadd(t, r.rdb, old, 3, 50, 0)
	r.start(Config{}) // default start: new
	waitLogged(t, r.logs, "ingest starting without a checkpoint")
	w := newWritten()
	xadd(t, r.rdb, w, 3, 40, 50)
	waitStored(t, r.events, 40, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
}

func TestBadEntriesAreSkippedAndDeadLettered(t *testing.T) {
	r := newRig(t, eventlog.Config{MaxMsgSize: 1024})
	dead := make(chan *nats.Msg, 100)
	sub, err := r.nc.ChanSubscribe("ingest.dead", dead)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	run := r.start(Config{Start: "all", DeadLetterSubject: "ingest.dead"})
	ctx := context.Background()
	w := newWritten()
	bad := map[string]string{
		skipNotJSON:        `{"channel_id": "chan-0", `,
		skipNotObject:      `["chan-0"]`,
		skipNoChannel:      `{"job_id": "x"}`,
		skipChannelType:    `{"channel_id": 42}`,
		skipInvalidChannel: `{"channel_id": "a.b"}`,
		skipTooLarge:       `{"channel_id": "chan-0", "pad": "` + strings.Repeat("x", 2000) + `"}`,
	}
	for reason, data := range bad {
		xadd(t, r.rdb, w, 3, 2, len(w.ids)*10)
		if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "full", Values: []any{"data", data}}).Err(); err != nil {
			t.Fatal(err)
		}
		_ = reason
	}
	// An entry without a data field.
	if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "full", Values: []any{"payload", "{}"}}).Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, r.rdb, w, 3, 5, 1000)
	waitStored(t, r.events, uint64(w.events), 20*time.Second)
	checkExactlyOnce(t, r.events, w)
	for reason := range bad {
		if got := run.counter(t, "pushbridge_ingest_entries_skipped_total", reason); got != 1 {
			t.Errorf("skipped %s: %v, want 1", reason, got)
		}
	}
	if got := run.counter(t, "pushbridge_ingest_entries_skipped_total", skipNoData); got != 1 {
		t.Errorf("skipped %s: %v", skipNoData, got)
	}
	reasons := map[string]bool{}
	for len(reasons) < len(bad)+1 {
		select {
		case msg := <-dead:
			if msg.Header.Get(eventlog.RedisIDHeader) == "" {
				t.Fatalf("dead letter without a Redis id: %v", msg.Header)
			}
			reasons[msg.Header.Get(SkipReasonHeader)] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("dead letters for %v only", reasons)
		}
	}
	waitLogged(t, r.logs, "skipping firehose entry", "reason="+skipChannelType)
}

func TestTwoMirrorsOneWriter(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	cfg := Config{Start: "all", LeaseTTL: time.Second}
	cfgA, cfgB := cfg, cfg
	cfgA.Instance, cfgB.Instance = "mirror-a", "mirror-b"
	a := r.start(cfgA)
	b := r.start(cfgB)
	w := newWritten()
	xadd(t, r.rdb, w, 5, 500, 0)
	waitStored(t, r.events, 500, 20*time.Second)
	leaders := a.counter(t, "pushbridge_ingest_leader", "") + b.counter(t, "pushbridge_ingest_leader", "")
	if leaders != 1 {
		t.Fatalf("%v leaders, want 1", leaders)
	}
	// Stop the leader: the standby takes over where it left off.
	leader, standby := a, b
	if b.counter(t, "pushbridge_ingest_leader", "") == 1 {
		leader, standby = b, a
	}
	leader.stop(t)
	xadd(t, r.rdb, w, 5, 500, 500)
	waitStored(t, r.events, 1000, 30*time.Second)
	checkExactlyOnce(t, r.events, w)
	if standby.counter(t, "pushbridge_ingest_leader", "") != 1 {
		t.Fatal("the standby did not take over")
	}
}

// TestGapIsReported: the firehose was trimmed past the checkpoint while
// the mirror was away. The error names the range that was lost and how many
// entries it held (Redis 7 counts entries added), and counts one gap.
func TestGapIsReported(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	ids := xaddMany(t, r.rdb, w, 2, 10, 0)
	waitStored(t, r.events, 10, 20*time.Second)
	run.stop(t)
	// While the mirror is away the firehose grows by 20 and is trimmed to
	// its last 5: 15 entries after the checkpoint are gone.
	later := xaddMany(t, r.rdb, newWritten(), 2, 20, 10)
	if err := r.rdb.XTrimMaxLen(context.Background(), prefix+"full", 5).Err(); err != nil {
		t.Fatal(err)
	}
	run2 := r.start(Config{Start: "all"})
	waitLogged(t, r.logs, "firehose was trimmed past the mirror's position", "after="+ids[9], "first_entry="+later[15], "lost=15")
	waitCounter(t, run2, "pushbridge_ingest_gaps_total", "", 1)
	waitStored(t, r.events, 15, 20*time.Second) // the 10 before and the 5 kept
}

// TestTrimmedCheckpointEntryIsNoGap: the trim removed the checkpoint entry
// itself (mirrored before) and nothing after it: no gap is reported.
func TestTrimmedCheckpointEntryIsNoGap(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	xaddMany(t, r.rdb, w, 2, 10, 0)
	waitStored(t, r.events, 10, 20*time.Second)
	run.stop(t)
	xaddMany(t, r.rdb, w, 2, 5, 10)
	if err := r.rdb.XTrimMaxLen(context.Background(), prefix+"full", 5).Err(); err != nil {
		t.Fatal(err)
	}
	run2 := r.start(Config{Start: "all"})
	waitStored(t, r.events, 15, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
	waitLogged(t, r.logs, "ingest state changed", "state=leader")
	if got := run2.counter(t, "pushbridge_ingest_gaps_total", ""); got != 0 {
		t.Fatalf("%v gaps reported; log:\n%s", got, r.logs.String())
	}
	if strings.Contains(r.logs.String(), "trimmed past") {
		t.Fatalf("false gap logged:\n%s", r.logs.String())
	}
}

// TestLagGaugesResetWhenNotLeading: a mirror catching up reports its lag
// (capped); once it stands by, its gauges read 0 instead of the last lag
// it saw.
func TestLagGaugesResetWhenNotLeading(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	xaddMany(t, r.rdb, newWritten(), 100, 30000, 0)
	run := r.start(Config{Start: "all", LeaseTTL: time.Second, MaxInFlight: 1, ReadCount: 10})
	waitFor(t, "lag reported", 20*time.Second, func() bool {
		return run.counter(t, "pushbridge_ingest_lag_entries", "") > 0
	})
	if got := run.counter(t, "pushbridge_ingest_lag_entries", ""); got > lagCap {
		t.Fatalf("lag %v above the cap", got)
	}
	stealLease(t, ingestKV(t, r.nc), "thief")
	run.waitState(t, "standby (lease held by thief)", 10*time.Second)
	for _, g := range []string{"pushbridge_ingest_lag_entries", "pushbridge_ingest_lag_seconds", "pushbridge_ingest_leader"} {
		if got := run.counter(t, g, ""); got != 0 {
			t.Errorf("%s = %v on a standby", g, got)
		}
	}
}

// TestRetriesAfterRedisOutage: while Redis is away the mirror retries with
// growing backoff and never claims to lead; once it has read again, the
// backoff starts over, so that the next outage is retried promptly.
func TestRetriesAfterRedisOutage(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	xadd(t, r.rdb, w, 3, 3, 0)
	waitStored(t, r.events, 3, 20*time.Second)
	run.stop(t)

	r.redis.Stop()
	mark := len(r.logs.String())
	errs := func(run *running) float64 { return run.counter(t, "pushbridge_ingest_redis_errors_total", "") }
	run2 := startMirrorWith(t, Config{Start: "all"}, r.redis.Addr(), r.events, r.logs,
		func(m *Mirror) {
			fastFailRedis(t, r.redis.Addr())(m)
			m.backoff = newBackoff(10*time.Millisecond, 2*time.Second)
		})
	waitFor(t, "the backoff at its cap", 30*time.Second, func() bool { return errs(run2) >= 10 })
	if strings.Contains(r.logs.String()[mark:], "state=leader") {
		t.Fatalf("claimed to lead while Redis was away:\n%s", r.logs.String()[mark:])
	}
	r.redis.Restart()
	xadd(t, r.rdb, w, 3, 3, 3)
	waitStored(t, r.events, 6, 20*time.Second)
	run2.waitState(t, "leader", 10*time.Second)

	r.redis.Stop()
	before := errs(run2)
	waitFor(t, "the next failure", 10*time.Second, func() bool { return errs(run2) > before })
	first := errs(run2)
	time.Sleep(time.Second) // a second of retries
	if n := errs(run2) - first; n < 3 {
		t.Fatalf("%v retries in the second after a new outage: the backoff did not start over", n)
	}
	r.redis.Restart()
	xadd(t, r.rdb, w, 3, 3, 6)
	waitStored(t, r.events, 9, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
}

// TestOldCheckpointIsVerified: after an outage longer than the dedupe
// window, entries acknowledged after the last checkpoint are recognised in
// the stream instead of being stored twice.
func TestOldCheckpointIsVerified(t *testing.T) {
	r := newRig(t, eventlog.Config{Duplicates: time.Second})
	run := r.start(Config{Start: "all"})
	w := newWritten()
	xadd(t, r.rdb, w, 3, 30, 0)
	waitStored(t, r.events, 30, 20*time.Second)
	run.stop(t)
	// Pretend the last checkpoint was written long ago, after 10 entries.
	kv := ingestKV(t, r.nc)
	tenth := w.ids["chan-0"][3] // chan-0 holds entries 0,3,6,9: its 4th is the 10th entry
	putCheckpoint(t, kv, checkpoint{ID: tenth, At: time.Now().Add(-time.Hour).UnixMilli(), Holder: "test"})
	time.Sleep(1100 * time.Millisecond) // the dedupe window (1s) is over
	run2 := r.start(Config{Start: "all"})
	xadd(t, r.rdb, w, 3, 6, 30)
	waitStored(t, r.events, 36, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
	waitCounter(t, run2, "pushbridge_ingest_duplicates_total", "", 20)
}

// waitCounter waits for a metric to reach want (acknowledgements are
// counted a moment after the stream stores them) and fails if it passes it.
func waitCounter(t *testing.T, run *running, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := run.counter(t, name, label)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, label, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitLogged(t *testing.T, logs *syncBuffer, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line with %q; log:\n%s", parts, logs.String())
}

func TestParseStreamID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want streamID
	}{{"1-2", streamID{1, 2}}, {"1795388654686-0", streamID{1795388654686, 0}}, {"5", streamID{5, 0}}} {
		got, err := parseStreamID(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"", "a-1", "1-b", "-"} {
		if _, err := parseStreamID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !(streamID{1, 5}).less(streamID{2, 0}) || (streamID{2, 0}).less(streamID{1, 9}) || !(streamID{1, 1}).less(streamID{1, 2}) {
		t.Fatal("order")
	}
	if kvKey("checkpoint.", "async-events-full:x") != "checkpoint.async-events-full_x" {
		t.Fatal(kvKey("checkpoint.", "async-events-full:x"))
	}
	_ = fmt.Sprint
}

func FuzzParseEntry(f *testing.F) {
	f.Add(redistest.FlaskEvent("c", "j", 1, "done"))
	f.Add(`{"channel_id": 1}`)
	f.Add(`[]`)
	f.Add(`{"channel_id": "a.b"}`)
	f.Fuzz(func(t *testing.T, data string) {
		channel, out, reason := parseEntry(map[string]any{"data": data}, 4096)
		if reason == "" {
			if err := eventlog.ValidateChannel(channel); err != nil {
				t.Fatalf("accepted channel %q: %v", channel, err)
			}
			if err := eventlog.ValidatePayload(out, 4096); err != nil || string(out) != data {
				t.Fatalf("accepted payload %q: %v", data, err)
			}
		}
	})
}
