package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

const testSecret = "test-secret-that-is-at-least-32-characters-long"

// gateway is a running gateway over a real embedded NATS server, served on
// a loopback httptest server.
type gateway struct {
	t      testing.TB
	srv    *Server
	log    *eventlog.Log
	http   *httptest.Server
	nats   *embedded.Server
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

type gatewayOptions struct {
	cfg      Config
	logCfg   eventlog.Config
	storeDir string
}

func startGateway(t testing.TB, o gatewayOptions) *gateway {
	t.Helper()
	ns, nc := embeddedtest.RunWith(t, embeddedtest.Options{StoreDir: o.storeDir})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.logCfg.Logger = logger
	ctx := context.Background()
	elog, err := eventlog.Open(ctx, js, o.logCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.cfg
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = testSecret
	}
	cfg.Logger = logger
	if cfg.ShutdownSpread == 0 {
		cfg.ShutdownSpread = 10 * time.Millisecond
	}
	srv, err := New(cfg, elog)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, srv: srv, log: elog, nats: ns, logs: logs, done: make(chan error, 1)}
	runCtx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	go func() { g.done <- srv.Run(runCtx) }()
	g.http = httptest.NewServer(srv)
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	g.waitReady()
	return g
}

func (g *gateway) stop() {
	g.http.Close()
	g.cancel()
	select {
	case err := <-g.done:
		if err != nil {
			g.t.Errorf("Run: %v", err)
		}
		g.done <- err
	case <-time.After(15 * time.Second):
		g.t.Errorf("Run did not return within 15s of shutdown")
	}
}

func (g *gateway) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := g.srv.Ready(); ok {
			return
		}
		if time.Now().After(deadline) {
			_, why := g.srv.Ready()
			g.t.Fatalf("gateway not ready after 10s: %s", why)
		}
		select {
		case <-g.srv.cursorSig.wait():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (g *gateway) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(g.http.URL, "http") + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// token mints a browser token for channel with extra claims.
func token(t testing.TB, channel string, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"channel": channel}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dial connects a browser-style client to channel.
func (g *gateway) dial(channel, lastID string) *client {
	g.t.Helper()
	c, resp, err := g.dialRaw(cookieHeader("async-token", token(g.t, channel, nil)), lastID)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		g.t.Fatalf("dial channel %s: %v (status %d)", channel, err, status)
	}
	return c
}

func cookieHeader(name, value string) http.Header {
	return http.Header{"Cookie": []string{name + "=" + value}}
}

func (g *gateway) dialRaw(h http.Header, lastID string) (*client, *http.Response, error) {
	q := ""
	if lastID != "" {
		q = "last_id=" + lastID
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(g.wsURL(q), h)
	if err != nil {
		return nil, resp, err
	}
	c := &client{t: g.t, ws: ws, frames: make(chan []byte, 100000), done: make(chan struct{})}
	go c.read()
	g.t.Cleanup(func() { _ = ws.Close() })
	return c, resp, nil
}

// client is a browser-style test client: it reads every frame into a
// channel and answers pings (gorilla's default handler).
type client struct {
	t        testing.TB
	ws       *websocket.Conn
	frames   chan []byte
	done     chan struct{}
	closeErr error
}

func (c *client) read() {
	defer close(c.done)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			c.closeErr = err
			return
		}
		if typ != websocket.TextMessage {
			c.closeErr = fmt.Errorf("unexpected frame type %d", typ)
			return
		}
		c.frames <- data
	}
}

// next returns the next frame or fails after timeout.
func (c *client) next(timeout time.Duration) []byte {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-c.done:
		select {
		case f := <-c.frames:
			return f
		default:
		}
		c.t.Fatalf("connection closed while waiting for a frame: %v", c.closeErr)
	case <-time.After(timeout):
		c.t.Fatalf("no frame within %s", timeout)
	}
	return nil
}

// expectNothing asserts no frame arrives within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	select {
	case f := <-c.frames:
		c.t.Fatalf("unexpected frame %s", f)
	case <-time.After(d):
	}
}

// waitClosed waits for the connection to end and returns the close error.
func (c *client) waitClosed(timeout time.Duration) error {
	c.t.Helper()
	select {
	case <-c.done:
		return c.closeErr
	case <-time.After(timeout):
		c.t.Fatalf("connection still open after %s", timeout)
	}
	return nil
}

// frameID extracts the id of an event frame.
func frameID(t testing.TB, frame []byte) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(frame, &v); err != nil {
		t.Fatalf("frame %q: %v", frame, err)
	}
	return v.ID
}

// publish appends an event and returns its sequence.
func (g *gateway) publish(channel string, payload string) uint64 {
	g.t.Helper()
	res, err := g.log.Append(context.Background(), channel, []byte(payload), eventlog.AppendOptions{})
	if err != nil {
		g.t.Fatalf("append: %v", err)
	}
	return res.Seq
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog waits until the log contains all of parts on one line.
func (g *gateway) waitLog(timeout time.Duration, parts ...string) string {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(g.logs.String(), "\n") {
			all := true
			for _, p := range parts {
				if !strings.Contains(line, p) {
					all = false
					break
				}
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no log line with %q within %s; log:\n%s", parts, timeout, g.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errTimeout = errors.New("timeout")

// metricValue returns a counter or gauge from the gateway's registry, named
// as in the exposition format: name{label="value",...}.
func metricValue(t testing.TB, g *gateway, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(series, "{")
	labels = strings.TrimSuffix(labels, "}")
	families, err := g.srv.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			if strings.Join(parts, ",") != labels {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}
