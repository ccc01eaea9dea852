package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// The process tests run the mirror in child processes: the test binary
// re-executed with these variables set runs a mirror until it is killed.
const (
	childEnv         = "PUSHBRIDGE_INGEST_TEST_CHILD"
	childNATSEnv     = "PUSHBRIDGE_INGEST_TEST_NATS"
	childRedisEnv    = "PUSHBRIDGE_INGEST_TEST_REDIS"
	childInstanceEnv = "PUSHBRIDGE_INGEST_TEST_INSTANCE"
)

// childLeaseTTL is the children's lease: short, so that a killed leader's
// lease expires quickly.
const childLeaseTTL = 750 * time.Millisecond

// childLogConfig is the event log the children and the process tests open
// (the same, or each Open would change the other's limits): enough history
// per channel for everything a test writes.
var childLogConfig = eventlog.Config{MaxMsgsPerChannel: 100_000}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChildMirror())
	}
	os.Exit(m.Run())
}

func runChildMirror() int {
	nc, err := nats.Connect(os.Getenv(childNATSEnv), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: nats:", err)
		return 1
	}
	js, _ := jetstream.New(nc)
	events, err := eventlog.Open(context.Background(), js, childLogConfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: event log:", err)
		return 1
	}
	rdb, err := NewRedisClient(RedisConfig{Addr: os.Getenv(childRedisEnv)})
	if err != nil {
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, err := New(Config{Start: "all", LeaseTTL: childLeaseTTL, ReadBlock: 50 * time.Millisecond, Logger: log,
		Instance: os.Getenv(childInstanceEnv), Conn: nc}, rdb, events)
	if err != nil {
		return 1
	}
	_ = m.Run(context.Background()) // until SIGKILL
	return 0
}

// procRig is a NATS server with a TCP listener, a Redis, and mirrors in
// child processes.
type procRig struct {
	t      *testing.T
	srv    *embedded.Server
	red    *redistest.Server
	rdb    *redis.Client
	nc     *nats.Conn
	js     jetstream.JetStream
	events *eventlog.Log
	kv     jetstream.KeyValue
}

func newProcRig(t *testing.T) *procRig {
	t.Helper()
	r := &procRig{t: t, srv: embeddedtest.Start(t, embeddedtest.Options{TCP: true}), red: redistest.Start(t)}
	r.rdb = r.red.Client()
	var err error
	if r.nc, err = r.srv.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nc.Close)
	r.js, _ = jetstream.New(r.nc)
	r.events = openEvents(t, r.nc, childLogConfig)
	return r
}

// startChild starts a mirror process named instance; it is killed when
// the test ends.
func (r *procRig) startChild(instance string) *exec.Cmd {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childNATSEnv+"="+r.srv.ClientURL(), childRedisEnv+"="+r.red.Addr(),
		childInstanceEnv+"="+instance)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// kill SIGKILLs a child: nothing is saved, the lease is not released.
func kill(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// leaseHolder is who holds the lease now ("" when free, expired or not
// yet created).
func (r *procRig) leaseHolder() string {
	if r.kv == nil {
		kv, err := r.js.KeyValue(context.Background(), "PUSHBRIDGE_INGEST")
		if err != nil {
			return ""
		}
		r.kv = kv
	}
	e, err := r.kv.Get(context.Background(), kvKey("lease.", prefix+"full"))
	if err != nil {
		return ""
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) != nil || time.Now().UnixMilli() >= l.Expires {
		return ""
	}
	return l.Holder
}

// msgs is how many events the stream holds.
func (r *procRig) msgs() uint64 {
	st, err := r.events.State(context.Background())
	if err != nil {
		return 0
	}
	return st.Msgs
}

// lastStoredID is the Redis id of the newest event in the stream.
func (r *procRig) lastStoredID() streamID {
	r.t.Helper()
	st, err := r.events.State(context.Background())
	if err != nil || st.LastSeq == 0 {
		return streamID{}
	}
	ev, err := r.events.Msg(context.Background(), st.LastSeq)
	if err != nil {
		r.t.Fatal(err)
	}
	id, _ := parseStreamID(ev.Header.Get(eventlog.RedisIDHeader))
	return id
}

// TestCrashExactlyOnce: a writer XADDs events the way Flask does, without
// pause, while mirror processes are SIGKILLed one after another — each
// only once it leads and the stream grows under it, at a random moment
// while it publishes; afterwards the stream holds every event exactly
// once, in Redis order per channel.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const channels, kills = 50, 16
	r := newProcRig(t)
	wr := startWriter(r.rdb, channels)
	rng := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	behind := 0 // kills after which the stream held events past the checkpoint
	for i := 0; i < kills; i++ {
		name := fmt.Sprintf("child-%d", i)
		child := r.startChild(name)
		waitFor(t, name+" leads", 20*time.Second, func() bool { return r.leaseHolder() == name })
		base := r.msgs()
		waitFor(t, "the stream grows under "+name, 20*time.Second, func() bool { return r.msgs() > base+20 })
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		kill(child)
		// The killed mirror had acknowledged (or had in flight) events
		// past its last checkpoint: the next one must not store them again.
		cp, _ := getCheckpoint(t, r.kv)
		id, _ := parseStreamID(cp.ID)
		if id.less(r.lastStoredID()) {
			behind++
		}
	}
	child := r.startChild("final")
	w := wr.finish(t)
	waitStored(t, r.events, uint64(w.events), 60*time.Second)
	checkExactlyOnce(t, r.events, w)
	kill(child)
	if behind < kills/2 {
		t.Fatalf("only %d of %d kills left stored events past the checkpoint: the kills did not land while publishing", behind, kills)
	}
	t.Logf("%d events from %d channels exactly once across %d SIGKILLs of the leading mirror (%d with events stored past the checkpoint)",
		w.events, channels, kills, behind)
}

// TestTwoMirrorsLeaderKilled: two mirror processes; the leader is
// SIGKILLed while entries flow, so its lease is not released; the standby
// takes over when the lease expires and continues where the checkpoint
// says: exactly once, in order.
func TestTwoMirrorsLeaderKilled(t *testing.T) {
	r := newProcRig(t)
	procs := map[string]*exec.Cmd{"mirror-a": r.startChild("mirror-a"), "mirror-b": r.startChild("mirror-b")}
	wr := startWriter(r.rdb, 20)
	var leader string
	waitFor(t, "a leader", 20*time.Second, func() bool { leader = r.leaseHolder(); return leader != "" })
	base := r.msgs()
	waitFor(t, "the stream grows", 20*time.Second, func() bool { return r.msgs() > base+100 })
	kill(procs[leader])
	killedAt := time.Now()
	other := "mirror-a"
	if leader == other {
		other = "mirror-b"
	}
	waitFor(t, other+" takes over", 20*time.Second, func() bool { return r.leaseHolder() == other })
	if took := time.Since(killedAt); took < childLeaseTTL/2 {
		t.Fatalf("%s took over %s after the kill: before the lease could expire", other, took)
	}
	base = r.msgs()
	waitFor(t, "the stream grows under "+other, 20*time.Second, func() bool { return r.msgs() > base+100 })
	w := wr.finish(t)
	waitStored(t, r.events, uint64(w.events), 30*time.Second)
	checkExactlyOnce(t, r.events, w)
}

// TestRedisRestartMidStream: Redis is killed and restarted while a writer
// keeps XADDing (retrying what fails); the mirror stalls no longer than
// Redis is away and stores every entry the firehose holds exactly once.
func TestRedisRestartMidStream(t *testing.T) {
	r := newRig(t, eventlog.Config{}, "--appendonly", "yes", "--appendfsync", "always")
	run := r.start(Config{Start: "all"})
	var mu sync.Mutex
	acked := map[string]bool{} // firehose ids whose XADD succeeded
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			ch := fmt.Sprintf("chan-%d", i%4)
			for attempt := 0; ; attempt++ {
				select {
				case <-stop:
					return
				default:
				}
				data := redistest.FlaskEvent(ch, fmt.Sprintf("job-%d-%d", i, attempt), 1, "done")
				_, fid, err := redistest.XAddFlask(context.Background(), r.rdb, prefix, ch, data)
				if err == nil {
					mu.Lock()
					acked[fid] = true
					mu.Unlock()
					break
				}
				time.Sleep(5 * time.Millisecond) // Redis is away: retry
			}
			time.Sleep(time.Millisecond)
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, "200 events written", 20*time.Second, func() bool { return count() >= 200 })
	r.redis.Stop()
	waitLogged(t, r.logs, "ingest state changed", "xread")
	r.redis.Restart()
	after := count()
	waitFor(t, "200 more events written", 20*time.Second, func() bool { return count() >= after+200 })
	close(stop)
	<-done

	// What the firehose holds is what must be mirrored: every acknowledged
	// XADD (Redis fsyncs each), and perhaps one whose reply the kill cut off.
	entries, err := r.rdb.XRange(context.Background(), prefix+"full", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	w := newWritten()
	held := map[string]bool{}
	for _, e := range entries {
		ch, data, reason := parseEntry(e.Values, 0)
		if reason != "" {
			t.Fatalf("firehose entry %s: %s", e.ID, reason)
		}
		w.add(ch, e.ID, string(data))
		held[e.ID] = true
	}
	mu.Lock()
	for id := range acked {
		if !held[id] {
			t.Fatalf("Redis lost acknowledged entry %s", id)
		}
	}
	mu.Unlock()
	waitStored(t, r.events, uint64(w.events), 30*time.Second)
	checkExactlyOnce(t, r.events, w)
	if ok, _ := run.m.Ready(); !ok {
		t.Fatal("mirror not ready after Redis came back")
	}
}
