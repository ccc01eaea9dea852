package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// closeCode returns the close code in a read error, or -1.
func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func TestConnectionLimits(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{MaxTotalConnections: 3, MaxConnectionsPerChannel: 2}})
	a1 := g.dial("a", "")
	a2 := g.dial("a", "")
	a3 := g.dial("a", "") // third on channel a: per-channel limit
	if code := closeCode(a3.waitClosed(5 * time.Second)); code != 1013 {
		t.Fatalf("per-channel limit: close code %d, want 1013", code)
	}
	b1 := g.dial("b", "")
	c1 := g.dial("c", "") // fourth socket: total limit
	if code := closeCode(c1.waitClosed(5 * time.Second)); code != 1013 {
		t.Fatalf("total limit: close code %d, want 1013", code)
	}
	g.waitLog(2*time.Second, "connection limit reached", "limit=limit_total")
	g.waitLog(2*time.Second, "connection limit reached", "limit=limit_channel")
	if v := metricValue(t, g, `pushbridge_connections_rejected_total{limit="limit_channel"}`); v != 1 {
		t.Errorf("limit_channel rejections %v", v)
	}
	// The accepted sockets keep working.
	seqA := g.publish("a", `{"x":1}`)
	seqB := g.publish("b", `{"x":2}`)
	for _, c := range []*client{a1, a2} {
		if id := frameID(t, c.next(5*time.Second)); id != g.log.ID(seqA).String() {
			t.Fatalf("a got %s", id)
		}
	}
	if id := frameID(t, b1.next(5*time.Second)); id != g.log.ID(seqB).String() {
		t.Fatalf("b got %s", id)
	}
	if n := g.srv.Connections(); n != 3 {
		t.Fatalf("connections %d, want 3", n)
	}
}

// dialSilent connects without ever reading: the client answers no ping and
// drains nothing. rcvBuf shrinks its socket receive buffer (0: default).
func (g *gateway) dialSilent(channel string, rcvBuf int) *websocket.Conn {
	g.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil && rcvBuf > 0 {
			_ = c.(*net.TCPConn).SetReadBuffer(rcvBuf)
		}
		return c, err
	}}
	ws, _, err := d.Dial(g.wsURL(""), cookieHeader("async-token", token(g.t, channel, nil)))
	if err != nil {
		g.t.Fatalf("dial: %v", err)
	}
	g.t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func TestHeartbeatTimeout(t *testing.T) {
	// The pong timeout leaves the answering client's reader room to be
	// scheduled late on a loaded machine (race detector, parallel tests).
	g := startGateway(t, gatewayOptions{cfg: Config{PingInterval: 25 * time.Millisecond, PongTimeout: 600 * time.Millisecond}})
	silent := g.dialSilent("hb", 0)
	alive := g.dial("hb", "") // its reader answers pings
	g.waitLog(5*time.Second, "terminating socket that stopped answering pings")
	// The silent socket was dropped without a close frame (terminate, as
	// superset-websocket does): reading hits EOF.
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := silent.ReadMessage(); err != nil {
			if closeCode(err) != -1 {
				t.Fatalf("silent socket got a close frame: %v", err)
			}
			break
		}
	}
	if v := metricValue(t, g, `pushbridge_disconnects_total{reason="no_pong"}`); v != 1 {
		t.Fatalf("no_pong disconnects %v, want 1", v)
	}
	// Several timeouts later the answering socket still receives.
	deadline := time.After(1500 * time.Millisecond)
	<-deadline
	seq := g.publish("hb", `{"x":1}`)
	if id := frameID(t, alive.next(5*time.Second)); id != g.log.ID(seq).String() {
		t.Fatalf("alive socket got %s", id)
	}
}

// TestSlowClientIsClosedOthersUnaffected: a socket that stops reading is
// closed once its queue overflows, without delaying the socket beside it.
// A client that reads again within closeGrace gets the frames written
// before the decision and then close 1008; one that stays stalled is reset
// once closeGrace has passed (its kernel buffer is full: the close frame
// cannot be written).
func TestSlowClientIsClosedOthersUnaffected(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		drains  bool
		netpoll bool
		buffer  int
	}{
		{"drains after the decision", 10 * time.Second, true, true, 128 << 10},
		// Without netpoll every write goes through a writer goroutine: the
		// queue must hold a dispatch batch (512 events) for the fast
		// client, whose writer may run only after the batch.
		{"drains after the decision, no netpoll", 10 * time.Second, true, false, 1 << 20},
		{"stalled", 300 * time.Millisecond, false, true, 128 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{cfg: Config{MaxSocketBufferBytes: tc.buffer, CloseGrace: tc.grace, DisableNetpoll: !tc.netpoll}})
			// A tiny receive buffer fills at once, but drains slowly on
			// loopback (the sender waits for window probes); a client that
			// reads again gets the default.
			rcvBuf := 4096
			if tc.drains {
				rcvBuf = 0
			}
			slow := g.dialSilent("busy", rcvBuf)
			fast := g.dial("busy", "")
			payload := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 1<<10))
			var want []string
			for i := 0; i < 50000; i++ {
				want = append(want, g.log.ID(g.publish("busy", payload)).String())
				if i%20 == 19 {
					if strings.Contains(g.logs.String(), "closing slow client") {
						break
					}
					// Let the fast client's reader run: this process is
					// also the publisher and the gateway, and a goroutine
					// waiting on the network can otherwise wait for the
					// scheduler's 10 ms poll while both CPUs are busy.
					time.Sleep(time.Millisecond)
				}
			}
			decided := time.Now()
			g.waitLog(10*time.Second, "closing slow client")
			t.Logf("slow client closed after %d events", len(want))
			if tc.drains {
				// Frames already handed to the socket arrive in order, then
				// the close frame.
				_ = slow.SetReadDeadline(time.Now().Add(tc.grace))
				var n int
				var err error
				for {
					var data []byte
					if _, data, err = slow.ReadMessage(); err != nil {
						break
					}
					if got := frameID(t, data); n >= len(want) || got != want[n] {
						t.Fatalf("slow client frame %d: %s, want %s", n, got, want[n])
					}
					n++
				}
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != 1008 || ce.Text != slowCloseText {
					t.Fatalf("slow client after %d frames: %v, want close 1008 %q", n, err, slowCloseText)
				}
				t.Logf("slow client read %d frames, then close 1008", n)
			}
			for i := 0; i < 50; i++ {
				want = append(want, g.log.ID(g.publish("busy", payload)).String())
			}
			for i, id := range want {
				if got := frameID(t, fast.next(10*time.Second)); got != id {
					t.Fatalf("fast client frame %d: %s, want %s", i, got, id)
				}
			}
			waitFor(t, tc.grace+5*time.Second, "slow socket gone", func() error {
				if n := g.srv.Connections(); n != 1 {
					return fmt.Errorf("%d connections, want 1", n)
				}
				return nil
			})
			if !tc.drains {
				if took := time.Since(decided); took < tc.grace-50*time.Millisecond {
					t.Errorf("stalled socket dropped after %s, before its close grace %s", took, tc.grace)
				}
				// Reset: reading fails promptly, with no close frame.
				_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					if _, _, err := slow.ReadMessage(); err != nil {
						if errors.Is(err, os.ErrDeadlineExceeded) || closeCode(err) != -1 {
							t.Fatalf("stalled connection: %v, want a reset", err)
						}
						break
					}
				}
			}
			if v := metricValue(t, g, `pushbridge_disconnects_total{reason="slow_client"}`); v != 1 {
				t.Fatalf("slow_client disconnects %v, want 1", v)
			}
			if v := metricValue(t, g, "pushbridge_send_errors_total"); v != 0 {
				t.Fatalf("send errors %v, want 0 (a slow client is counted as such)", v)
			}
		})
	}
}

// TestBackedUpSocketKeepsWorking: a socket whose writes once went through
// a writer goroutine (the client paused, its kernel buffers filled) keeps
// receiving after that writer's deadline has passed.
func TestBackedUpSocketKeepsWorking(t *testing.T) {
	const writeTimeout = time.Second
	g := startGateway(t, gatewayOptions{cfg: Config{MaxSocketBufferBytes: 4 << 20, WriteTimeout: writeTimeout}})
	ws := g.dialSilent("paused", 0)
	payload := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 1<<10))
	const n, pause = 1000, 600 // the kernel buffers hold about 250 of these
	ids := make(chan string, n)
	resume := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		<-resume
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < n; i++ {
			_, data, err := ws.ReadMessage()
			if err != nil {
				readErr <- fmt.Errorf("frame %d: %w", i, err)
				return
			}
			if got, want := frameID(t, data), <-ids; got != want {
				readErr <- fmt.Errorf("frame %d: %s, want %s", i, got, want)
				return
			}
		}
		readErr <- nil
	}()
	for i := 0; i < n; i++ {
		ids <- g.log.ID(g.publish("paused", payload)).String()
		if i == pause {
			close(resume)
		}
	}
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	time.Sleep(writeTimeout + 300*time.Millisecond) // past the writer's deadline
	want := g.log.ID(g.publish("paused", `{"after":"pause"}`)).String()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("after the pause: %v", err)
	}
	if got := frameID(t, data); got != want {
		t.Fatalf("after the pause: %s, want %s", got, want)
	}
	if v := metricValue(t, g, "pushbridge_send_errors_total"); v != 0 {
		t.Fatalf("send errors %v", v)
	}
}

// TestClosedDuringHandshake: a socket closed between its registration and
// the end of its handshake (its held events overflowed) leaves neither the
// connection gauge nor the registry off: it was counted and listed when it
// was registered, and is uncounted and unlisted once.
func TestClosedDuringHandshake(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{MaxSocketBufferBytes: 1024}})
	g.srv.beforeHandshake = func() {
		g.publish("hs", `{"blob":"`+strings.Repeat("x", 2048)+`"}`) // more than the socket may hold
		waitFor(t, 5*time.Second, "socket dropped during its handshake", func() error {
			if n := g.srv.Connections(); n != 0 {
				return fmt.Errorf("%d connections", n)
			}
			return nil
		})
	}
	if c, _, err := g.dialRaw(cookieHeader("async-token", token(t, "hs", nil)), ""); err == nil {
		if err := c.waitClosed(5 * time.Second); closeCode(err) != -1 && closeCode(err) != websocket.CloseAbnormalClosure {
			t.Fatalf("socket closed during its handshake: %v, want the connection dropped", err)
		}
	}
	g.srv.beforeHandshake = nil
	if v := metricValue(t, g, "pushbridge_connections"); v != 0 {
		t.Fatalf("pushbridge_connections %v, want 0", v)
	}
	if n := len(g.srv.registry.all()); n != 0 {
		t.Fatalf("%d sockets left in the registry", n)
	}
	if v := metricValue(t, g, `pushbridge_disconnects_total{reason="slow_client"}`); v != 1 {
		t.Fatalf("slow_client disconnects %v, want 1", v)
	}
	// The next socket is counted normally.
	c := g.dial("other", "")
	if v := metricValue(t, g, "pushbridge_connections"); v != 1 {
		t.Fatalf("pushbridge_connections %v with one socket, want 1", v)
	}
	_ = c.ws.Close()
	waitFor(t, 5*time.Second, "gauge back to 0", func() error {
		if v := metricValue(t, g, "pushbridge_connections"); v != 0 {
			return fmt.Errorf("pushbridge_connections %v", v)
		}
		return nil
	})
}

func TestClientControlFrames(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{ReadLimit: 1024}})

	// Ping from the client gets a pong with the same payload.
	ws := g.dialSilent("ctl", 0)
	pong := make(chan string, 1)
	ws.SetPongHandler(func(data string) error { pong <- data; return nil })
	if err := ws.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	select {
	case got := <-pong:
		if got != "hello" {
			t.Fatalf("pong %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}

	// A client close is answered with a close frame.
	c := g.dial("ctl", "")
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(c.waitClosed(5 * time.Second)); code != 4000 {
		t.Fatalf("close echo code %d, want 4000", code)
	}

	// Data messages are ignored; an oversized one closes with 1009.
	big := g.dial("ctl", "")
	if err := big.ws.WriteMessage(websocket.TextMessage, []byte("small, ignored")); err != nil {
		t.Fatal(err)
	}
	if err := big.ws.WriteMessage(websocket.TextMessage, make([]byte, 2048)); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(big.waitClosed(5 * time.Second)); code != 1009 {
		t.Fatalf("oversized message: close code %d, want 1009", code)
	}
	if v := metricValue(t, g, "pushbridge_client_messages_ignored_total"); v != 1 {
		t.Fatalf("ignored messages %v, want 1", v)
	}
}

func TestShutdownClosesWith1001(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{ShutdownSpread: 50 * time.Millisecond}})
	var clients []*client
	for i := 0; i < 5; i++ {
		clients = append(clients, g.dial(fmt.Sprintf("s%d", i%2), ""))
	}
	g.http.Close() // stop accepting, as serve does first
	g.cancel()
	for i, c := range clients {
		if code := closeCode(c.waitClosed(5 * time.Second)); code != 1001 {
			t.Fatalf("client %d: close code %d, want 1001", i, code)
		}
	}
	select {
	case err := <-g.done:
		g.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if n := g.srv.Connections(); n != 0 {
		t.Fatalf("%d connections left", n)
	}
}

func TestPlainHTTP(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	const noType = "-" // no Content-Type header at all
	check := func(method, path string, status int, body, contentType string, exact bool) {
		t.Helper()
		req, _ := http.NewRequest(method, g.http.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status || (exact && string(b) != body) || (!exact && !strings.Contains(string(b), body)) {
			t.Fatalf("%s %s: %d %q, want %d %q", method, path, resp.StatusCode, b, status, body)
		}
		ct, has := resp.Header["Content-Type"]
		switch {
		case contentType == noType && has:
			t.Fatalf("%s %s: Content-Type %q, want none", method, path, ct)
		case contentType != noType && !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType):
			t.Fatalf("%s %s: Content-Type %q, want %s", method, path, resp.Header.Get("Content-Type"), contentType)
		}
		if v := resp.Header.Get("X-Content-Type-Options"); contentType == noType && v != "" {
			t.Fatalf("%s %s: X-Content-Type-Options %q", method, path, v)
		}
	}
	// superset-websocket's bytes (contract §3): no Content-Type, no newline.
	check("GET", "/health", 200, "OK", noType, true)
	check("HEAD", "/health", 200, "", noType, true)
	check("POST", "/health", 404, "Not Found", noType, true)
	check("GET", "/", 404, "Not Found", noType, true)
	check("GET", "/anything/else", 404, "Not Found", noType, true)
	// pushbridge's own endpoints say what they are.
	check("GET", "/ready", 200, `"status":"ok"`, "application/json", false)
	check("GET", "/metrics", 200, "pushbridge_connections", "text/plain", false)
}
