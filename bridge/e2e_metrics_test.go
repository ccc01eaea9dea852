package bridge

import (
	"context"
	"encoding/json"
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

// TestStatsdSendError: a socket whose write fails (here: the client stopped
// reading and the write made no progress for writeTimeout, before its queue
// filled) is closed and counted as ws_client_send_error.
func TestStatsdSendError(t *testing.T) {
	sd := &recordingStatsd{}
	g := startGateway(t, gatewayOptions{cfg: Config{Statsd: sd, WriteTimeout: 200 * time.Millisecond, MaxSocketBufferBytes: 8 << 20}})
	g.dialSilent("stuck", 4096)
	payload := `{"blob":"` + strings.Repeat("x", 1024) + `"}`
	for i := 0; i < 400; i++ { // more than the kernel buffers hold, far less than the queue
		g.publish("stuck", payload)
	}
	waitFor(t, 5*time.Second, "ws_client_send_error", func() error {
		if n := sd.get(statsdSendError); n != 1 {
			return fmt.Errorf("ws_client_send_error = %d", n)
		}
		return nil
	})
	waitFor(t, 5*time.Second, "socket closed", func() error {
		if v := metricValue(t, g, `pushbridge_disconnects_total{reason="write_timeout"}`); v != 1 {
			return fmt.Errorf("write_timeout disconnects %v", v)
		}
		return nil
	})
	if v := metricValue(t, g, "pushbridge_send_errors_total"); v != 1 {
		t.Fatalf("pushbridge_send_errors_total %v, want 1", v)
	}
	if n := sd.get(statsdBackpressure); n != 0 {
		t.Fatalf("ws_client_backpressure_disconnect = %d, want 0", n)
	}
}

// TestRefusalsShuttingDownAndBadHandshake: an upgrade that reaches the
// gateway while it shuts down gets 503 shutting_down; a request that claims
// to be an upgrade but is not a valid handshake gets 400 bad_handshake.
// Both are counted, and neither leaves a socket behind.
func TestRefusalsShuttingDownAndBadHandshake(t *testing.T) {
	sd := &recordingStatsd{}
	g := startGateway(t, gatewayOptions{cfg: Config{Statsd: sd}})
	upgrade := func(version string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, g.http.URL+"/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if version != "" {
			req.Header.Set("Sec-WebSocket-Version", version)
		}
		req.Header.Set("Cookie", "async-token="+token(t, "r", nil))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// No Sec-WebSocket-Version: gorilla refuses the handshake after the
	// socket was registered.
	if code, body := upgrade(""); code != http.StatusBadRequest || !strings.HasPrefix(body, "bad_handshake: ") {
		t.Fatalf("bad handshake: %d %q, want 400 bad_handshake", code, body)
	}
	if v := metricValue(t, g, `pushbridge_upgrades_rejected_total{reason="bad_handshake"}`); v != 1 {
		t.Fatalf("bad_handshake refusals %v, want 1", v)
	}
	if v := metricValue(t, g, "pushbridge_connections"); v != 0 || g.srv.Connections() != 0 || len(g.srv.registry.all()) != 0 {
		t.Fatalf("after a bad handshake: gauge %v, %d connections, %d listed", v, g.srv.Connections(), len(g.srv.registry.all()))
	}

	// Shutting down: Run has returned, the HTTP server still answers.
	g.cancel()
	select {
	case err := <-g.done:
		g.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if code, body := upgrade("13"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "shutting_down: ") {
		t.Fatalf("upgrade while shutting down: %d %q, want 503 shutting_down", code, body)
	}
	if v := metricValue(t, g, `pushbridge_upgrades_rejected_total{reason="shutting_down"}`); v != 1 {
		t.Fatalf("shutting_down refusals %v, want 1", v)
	}
	if n := sd.get(statsdUpgradeRejected); n != 2 {
		t.Fatalf("ws_upgrade_rejected = %d, want 2", n)
	}
}

// TestReadyReportsStreamState: /ready shows the stream's state as the
// periodic check sees it, and a stream deleted while NATS stays connected
// makes the node not ready after a few failed checks; it is ready again
// once the stream is back.
func TestReadyReportsStreamState(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{streamCheckInterval: 50 * time.Millisecond}})
	ready := func() (int, readyStatus) {
		t.Helper()
		resp, err := http.Get(g.http.URL + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st readyStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, st
	}
	g.publish("r", `{"n":1}`)
	seq := g.publish("r", `{"n":2}`)
	waitFor(t, 5*time.Second, "/ready shows the stream's last sequence", func() error {
		code, st := ready()
		if code != http.StatusOK || st.StreamState == nil || st.StreamState.LastSeq != seq || st.StreamState.Msgs != 2 {
			return fmt.Errorf("%d %+v", code, st.StreamState)
		}
		return nil
	})

	nc, err := g.nats.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := g.log.Config()
	if err := js.DeleteStream(context.Background(), g.log.ReadStream()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "/ready fails once the stream is gone", func() error {
		code, st := ready()
		if code != http.StatusServiceUnavailable || !strings.Contains(st.Reason, "stream "+g.log.ReadStream()+" unavailable") ||
			st.StreamState == nil || st.StreamState.Failures < streamCheckFailures || st.StreamState.Error == "" {
			return fmt.Errorf("%d %q %+v", code, st.Reason, st.StreamState)
		}
		return nil
	})
	g.waitLog(time.Second, "event log stream unavailable")
	if ok, _ := g.srv.Ready(); ok {
		t.Fatal("Ready() true without a stream")
	}

	// Recreated (as another node's Open would): ready again.
	if _, err := eventlog.Open(context.Background(), js, eventlog.Config{Stream: cfg.Stream, SubjectPrefix: cfg.SubjectPrefix, Logger: embeddedtest.QuietLogger()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "/ready recovers with the stream", func() error {
		if code, st := ready(); code != http.StatusOK || st.StreamState.Failures != 0 {
			return fmt.Errorf("%d %q %+v", code, st.Reason, st.StreamState)
		}
		return nil
	})
}
