package bridge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// recordingStatsd records statsd increments.
type recordingStatsd struct {
	mu     sync.Mutex
	counts map[string]int
}

func (r *recordingStatsd) Incr(name string, _ []string, _ float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	r.counts[name]++
	return nil
}

func (r *recordingStatsd) get(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[name]
}

// TestStatsdCounters checks Superset's statsd counter names.
func TestStatsdCounters(t *testing.T) {
	sd := &recordingStatsd{}
	g := startGateway(t, gatewayOptions{cfg: Config{Statsd: sd, MaxConnectionsPerChannel: 1, MaxSocketBufferBytes: 64 << 10}})
	g.dial("s", "")
	g.dial("s", "") // refused by the per-channel limit
	if _, _, err := g.dialRaw(http.Header{}, ""); err == nil {
		t.Fatal("upgrade without a cookie accepted")
	}
	slow := g.dialSilent("slow", 4096)
	_ = slow
	payload := `{"blob":"` + strings.Repeat("x", 1024) + `"}`
	for i := 0; i < 20000 && sd.get(statsdBackpressure) == 0; i++ {
		g.publish("slow", payload)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sd.get(statsdConnectionRejected) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for name, want := range map[string]int{
		statsdConnected: 2, statsdUpgradeRejected: 1, statsdConnectionRejected: 1, statsdBackpressure: 1,
	} {
		if got := sd.get(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestNotReadyRefuses: before the live consumer has caught up (here: before
// Run), upgrades are refused with 503 and /ready says why.
func TestNotReadyRefuses(t *testing.T) {
	_, nc := embeddedtest.Run(t)
	js, _ := jetstream.New(nc)
	elog, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{JWTSecret: testSecret, Logger: embeddedtest.QuietLogger()}, elog)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/any/path", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Cookie", "async-token="+token(t, "c", nil))
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.HasPrefix(rec.Body.String(), "not_ready:") {
		t.Fatalf("upgrade before ready: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"reason":"starting"`) {
		t.Fatalf("/ready before ready: %d %q", rec.Code, rec.Body.String())
	}
	srv.AddReadyCheck("ingest", func() (bool, string) { return false, "redis down" })
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	if !strings.Contains(rec.Body.String(), `"ingest":"degraded: redis down"`) {
		t.Fatalf("/ready components: %q", rec.Body.String())
	}
}

// TestChannelsGauge: pushbridge_channels counts the channels with a socket
// or a cached event, as /metrics shows it.
func TestChannelsGauge(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	scrape := func() string {
		t.Helper()
		resp, err := http.Get(g.http.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "pushbridge_channels ") {
				return strings.TrimPrefix(line, "pushbridge_channels ")
			}
		}
		t.Fatalf("no pushbridge_channels in /metrics:\n%s", b)
		return ""
	}
	want := func(v string) {
		t.Helper()
		waitFor(t, 5*time.Second, "pushbridge_channels "+v, func() error {
			if got := scrape(); got != v {
				return fmt.Errorf("pushbridge_channels %s", got)
			}
			return nil
		})
	}
	want("0")
	a := g.dial("a", "")
	want("1")
	seq := g.publish("b", `{"cached":true}`) // no socket; its event is in the ring
	for g.srv.hub.cursor.Load() < seq {
		<-g.srv.cursorSig.wait()
	}
	want("2")
	_ = a.ws.Close() // a has no events: it goes with its last socket
	want("1")
}
