package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

const prefix = "async-events-"

// rig is a real redis-server and a real embedded NATS server with the
// event log on it.
type rig struct {
	t      testing.TB
	redis  *redistest.Server
	rdb    *redis.Client
	nc     *nats.Conn
	events *eventlog.Log
	logs   *syncBuffer
}

func newRig(t testing.TB, logCfg eventlog.Config, redisArgs ...string) *rig {
	t.Helper()
	r := &rig{t: t, redis: redistest.Start(t, redisArgs...)}
	r.rdb = r.redis.Client()
	_, r.nc = embeddedtest.Run(t)
	r.events = openEvents(t, r.nc, logCfg)
	r.logs = &syncBuffer{}
	return r
}

func openEvents(t testing.TB, nc *nats.Conn, cfg eventlog.Config) *eventlog.Log {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	elog, err := eventlog.Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return elog
}

// mirror starts a mirror; it stops when the test ends or stop is called.
type running struct {
	m      *Mirror
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

func (r *rig) start(cfg Config) *running {
	r.t.Helper()
	return startMirror(r.t, cfg, r.redis.Addr(), r.events, r.logs)
}

func startMirror(t testing.TB, cfg Config, redisAddr string, events *eventlog.Log, logs *syncBuffer) *running {
	t.Helper()
	return startMirrorWith(t, cfg, redisAddr, events, logs, nil)
}

// startMirrorWith is startMirror; tweak, when set, adjusts the mirror
// before it runs (test hooks).
func startMirrorWith(t testing.TB, cfg Config, redisAddr string, events *eventlog.Log, logs *syncBuffer, tweak func(*Mirror)) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.ReadBlock == 0 {
		cfg.ReadBlock = 100 * time.Millisecond
	}
	rdb, err := NewRedisClient(RedisConfig{Addr: redisAddr})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, rdb, events)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{m: m, cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { run.done <- m.Run(ctx) }()
	t.Cleanup(func() { run.stop(t); _ = rdb.Close() })
	return run
}

func (r *running) stop(t testing.TB) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("mirror Run: %v", err)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Errorf("mirror did not stop within 20s")
	}
}

// fastFailRedis gives the mirror a Redis client without go-redis's own
// retries (which hold a command for seconds while Redis is down), so that
// a test sees the mirror's retries.
func fastFailRedis(t testing.TB, addr string) func(*Mirror) {
	return func(m *Mirror) {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second, Protocol: 2})
		t.Cleanup(func() { _ = c.Close() })
		m.rdb = c
	}
}

// state is the mirror's state as Ready reports it.
func (r *running) state() string {
	_, s := r.m.Ready()
	return s
}

// waitState waits until the mirror's state contains part.
func (r *running) waitState(t testing.TB, part string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.state(), part) {
		if time.Now().After(deadline) {
			t.Fatalf("mirror state %q after %s, want it to contain %q", r.state(), timeout, part)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter reads a metric of the mirror.
func (r *running) counter(t testing.TB, name, label string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// stored is what the stream holds for one channel, in stream order.
type stored struct {
	redisIDs []string
	data     []string
}

// contents reads the whole stream.
func contents(t *testing.T, events *eventlog.Log) map[string]*stored {
	t.Helper()
	out := make(map[string]*stored)
	err := events.Scan(context.Background(), 0, 0, func(ev eventlog.Event) error {
		s := out[ev.Channel]
		if s == nil {
			s = &stored{}
			out[ev.Channel] = s
		}
		s.redisIDs = append(s.redisIDs, ev.Header.Get(eventlog.RedisIDHeader))
		s.data = append(s.data, string(ev.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitStored waits until the stream holds n events.
func waitStored(t *testing.T, events *eventlog.Log, n uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := events.State(context.Background())
		if err == nil && st.Msgs >= n {
			if st.Msgs > n {
				t.Fatalf("stream holds %d events, want %d", st.Msgs, n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %d events after %s, want %d", st.Msgs, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// written records what a writer XADDed, per channel, in order.
type written struct {
	mu     sync.Mutex
	ids    map[string][]string // firehose ids
	data   map[string][]string
	events int
}

func newWritten() *written {
	return &written{ids: map[string][]string{}, data: map[string][]string{}}
}

func (w *written) add(channel, firehoseID, data string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ids[channel] = append(w.ids[channel], firehoseID)
	w.data[channel] = append(w.data[channel], data)
	w.events++
}

// xadd writes n Flask-style events round robin over channels.
func xadd(t *testing.T, rdb redis.Cmdable, w *written, channels, n, offset int) {
	t.Helper()
	for i := 0; i < n; i++ {
		ch := fmt.Sprintf("chan-%d", (offset+i)%channels)
		data := redistest.FlaskEvent(ch, fmt.Sprintf("job-%d", offset+i), 1, "done")
		_, fid, err := redistest.XAddFlask(context.Background(), rdb, prefix, ch, data)
		if err != nil {
			t.Fatal(err)
		}
		w.add(ch, fid, data)
	}
}

// xaddMany is xadd through a pipeline, for large backlogs: the same
// events, written much faster. It returns the firehose ids in order.
func xaddMany(t testing.TB, rdb *redis.Client, w *written, channels, n, offset int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for start := 0; start < n; start += 500 {
		pipe := rdb.Pipeline()
		type pending struct {
			ch, data string
			cmd      *redis.StringCmd
		}
		var batch []pending
		for i := start; i < min(start+500, n); i++ {
			ch := fmt.Sprintf("chan-%d", (offset+i)%channels)
			data := redistest.FlaskEvent(ch, fmt.Sprintf("job-%d", offset+i), 1, "done")
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: prefix + ch, MaxLen: 1000, Approx: true, Values: []any{"data", data}})
			cmd := pipe.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "full", MaxLen: 1_000_000, Approx: true, Values: []any{"data", data}})
			batch = append(batch, pending{ch, data, cmd})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, b := range batch {
			w.add(b.ch, b.cmd.Val(), b.data)
			ids = append(ids, b.cmd.Val())
		}
	}
	return ids
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writer XADDs Flask-style events round robin over channels, paced, until
// stopped; it records what it wrote.
type writer struct {
	w    *written
	stop chan struct{}
	done chan error
}

func startWriter(rdb redis.Cmdable, channels int) *writer {
	wr := &writer{w: newWritten(), stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-wr.stop:
				wr.done <- nil
				return
			default:
			}
			ch := fmt.Sprintf("chan-%d", i%channels)
			data := redistest.FlaskEvent(ch, fmt.Sprintf("job-%d", i), 1, "done")
			_, fid, err := redistest.XAddFlask(context.Background(), rdb, prefix, ch, data)
			if err != nil {
				wr.done <- err
				return
			}
			wr.w.add(ch, fid, data)
			if i%20 == 19 {
				time.Sleep(5 * time.Millisecond) // about 2,000 events/s
			}
		}
	}()
	return wr
}

// finish stops the writer and returns what it wrote.
func (wr *writer) finish(t *testing.T) *written {
	t.Helper()
	close(wr.stop)
	if err := <-wr.done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	return wr.w
}

// checkExactlyOnce compares the stream with what was written: every event
// once, byte for byte, in Redis order per channel.
func checkExactlyOnce(t *testing.T, events *eventlog.Log, w *written) {
	t.Helper()
	got := contents(t, events)
	w.mu.Lock()
	defer w.mu.Unlock()
	total := 0
	for ch, ids := range w.ids {
		s := got[ch]
		if s == nil {
			t.Fatalf("channel %s: nothing stored, %d written", ch, len(ids))
		}
		total += len(s.redisIDs)
		if len(s.redisIDs) != len(ids) {
			t.Fatalf("channel %s: %d stored, %d written", ch, len(s.redisIDs), len(ids))
		}
		for i := range ids {
			if s.redisIDs[i] != ids[i] || s.data[i] != w.data[ch][i] {
				t.Fatalf("channel %s event %d: stored %s %q, written %s %q", ch, i, s.redisIDs[i], s.data[i], ids[i], w.data[ch][i])
			}
		}
	}
	if total != w.events {
		t.Fatalf("stream holds %d mirrored events, %d written", total, w.events)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ingestKV opens the mirror's KV bucket (the mirror creates it).
func ingestKV(t testing.TB, nc *nats.Conn) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		kv, err := js.KeyValue(context.Background(), "PUSHBRIDGE_INGEST")
		if err == nil {
			return kv
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest bucket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var cpKeyFull = kvKey("checkpoint.", prefix+"full")

// putCheckpoint overwrites the checkpoint, as an operator (or a bug) might.
func putCheckpoint(t testing.TB, kv jetstream.KeyValue, cp checkpoint) {
	t.Helper()
	b, _ := json.Marshal(cp)
	if _, err := kv.Put(context.Background(), cpKeyFull, b); err != nil {
		t.Fatal(err)
	}
}

// getCheckpoint reads the checkpoint and its revision.
func getCheckpoint(t testing.TB, kv jetstream.KeyValue) (checkpoint, uint64) {
	t.Helper()
	cp, rev, ok, err := loadCheckpoint(context.Background(), kv, cpKeyFull)
	if err != nil || !ok {
		t.Fatalf("checkpoint: %v (found %v)", err, ok)
	}
	return cp, rev
}

func quietLog(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
