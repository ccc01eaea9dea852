package ingest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// BenchmarkMirrorThroughput measures Redis → JetStream: b.N Flask-style
// entries are in the firehose when the mirror starts; the clock stops when
// JetStream has acknowledged the last one.
func BenchmarkMirrorThroughput(b *testing.B) {
	r := newRig(b, eventlog.Config{})
	ctx := context.Background()
	pipe := r.rdb.Pipeline()
	for i := 0; i < b.N; i++ {
		ch := fmt.Sprintf("chan-%d", i%2500)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "full", Values: []any{"data", redistest.FlaskEvent(ch, fmt.Sprint("job-", i), 1, "done")}})
		if i%1000 == 999 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	run := r.start(Config{Start: "all"})
	waitStoredB(b, r.events, uint64(b.N), 5*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	run.cancel()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkMirrorLag measures the lag from XADD to JetStream at a steady
// 5,000 events/s: each event's storage time in JetStream minus the
// millisecond of its Redis id. Run it with -benchtime 20000x.
func BenchmarkMirrorLag(b *testing.B) {
	r := newRig(b, eventlog.Config{})
	run := r.start(Config{})
	waitLeader(b, run)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lags := make(chan time.Duration, b.N)
	go func() {
		_ = r.events.Follow(ctx, 1, eventlog.FollowOptions{}, func(ev eventlog.Event) {
			// Follow does not carry headers; the payload's job id holds the
			// send time.
			var sent int64
			fmt.Sscanf(string(ev.Data[jobOffset(ev.Data):]), "%d", &sent)
			lags <- ev.Time.Sub(time.Unix(0, sent))
		})
	}()
	b.ResetTimer()
	tick := time.NewTicker(200 * time.Microsecond) // 5,000/s
	defer tick.Stop()
	for i := 0; i < b.N; i++ {
		<-tick.C
		ch := fmt.Sprintf("chan-%d", i%2500)
		data := fmt.Sprintf(`{"channel_id": %q, "job_id": "%d", "user_id": 1, "status": "done", "errors": [], "result_url": null}`, ch, time.Now().UnixNano())
		if _, _, err := redistest.XAddFlask(ctx, r.rdb, prefix, ch, data); err != nil {
			b.Fatal(err)
		}
	}
	var all []time.Duration
	timeout := time.After(30 * time.Second)
	for len(all) < b.N {
		select {
		case d := <-lags:
			all = append(all, d)
		case <-timeout:
			b.Fatalf("%d of %d events stored", len(all), b.N)
		}
	}
	b.StopTimer()
	slices.Sort(all)
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
}

func jobOffset(data []byte) int {
	const key = `"job_id": "`
	for i := 0; i+len(key) <= len(data); i++ {
		if string(data[i:i+len(key)]) == key {
			return i + len(key)
		}
	}
	return 0
}

func waitLeader(b *testing.B, run *running) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ok, detail := run.m.Ready(); ok && detail != "" && detail[:6] == "leader" {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatal("mirror did not become leader")
}

func waitStoredB(b *testing.B, events *eventlog.Log, n uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := events.State(context.Background())
		if err == nil && st.Msgs >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("stream holds %d of %d", st.Msgs, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
