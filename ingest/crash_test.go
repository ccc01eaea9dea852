package ingest

import (
	"context"
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

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// The crash test runs the mirror in child processes: the test binary
// re-executed with these variables set runs a mirror until it is killed.
const (
	childEnv      = "PUSHBRIDGE_INGEST_TEST_CHILD"
	childNATSEnv  = "PUSHBRIDGE_INGEST_TEST_NATS"
	childRedisEnv = "PUSHBRIDGE_INGEST_TEST_REDIS"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChildMirror())
	}
	os.Exit(m.Run())
}

func runChildMirror() int {
	nc, err := nats.Connect(os.Getenv(childNATSEnv), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: nats:", err)
		return 1
	}
	js, _ := jetstream.New(nc)
	events, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: event log:", err)
		return 1
	}
	rdb, err := NewRedisClient(RedisConfig{Addr: os.Getenv(childRedisEnv)})
	if err != nil {
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := New(Config{Start: "all", LeaseTTL: time.Second, ReadBlock: 50 * time.Millisecond, Logger: log}, rdb, events)
	if err != nil {
		return 1
	}
	_ = m.Run(context.Background()) // until SIGKILL
	return 0
}

// TestCrashExactlyOnce: a writer XADDs tens of thousands of events the way
// Flask does while the mirror process is SIGKILLed at random moments and
// restarted; afterwards the stream holds every event exactly once, in
// Redis order per channel.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const events, channels, kills = 20000, 50, 6
	srv := embeddedtest.Start(t, embeddedtest.Options{TCP: true})
	red := redistest.Start(t)
	rdb := red.Client()

	w := newWritten()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer, paced to span the kills
		defer wg.Done()
		for i := 0; i < events; i += 100 {
			xadd(t, rdb, w, channels, 100, i)
			time.Sleep(10 * time.Millisecond)
		}
	}()

	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", childNATSEnv+"="+srv.ClientURL(), childRedisEnv+"="+red.Addr())
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	var child *exec.Cmd
	for i := 0; i < kills; i++ {
		child = startChild()
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()
	}
	child = startChild()
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	wg.Wait()

	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log := openEvents(t, nc, eventlog.Config{})
	waitStored(t, log, events, 60*time.Second)
	checkExactlyOnce(t, log, w)
	t.Logf("%d events from %d channels exactly once across %d SIGKILLs of the mirror", events, channels, kills)
}
