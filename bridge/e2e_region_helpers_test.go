package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// Multi-region test harness: embedded NATS servers wired into
// super-clusters and leaf node topologies on loopback, gateways started on
// them, and a TCP proxy that can stall a link between regions.

// freePort returns a loopback port for a listener that other servers must
// know before it starts.
func freePort(t testing.TB) int { return embeddedtest.FreePort(t) }

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// startNATS starts an embedded server from cfg with a fresh store and a
// quiet logger; it is shut down when the test ends.
func startNATS(t testing.TB, cfg embedded.Config) *embedded.Server {
	t.Helper()
	return embeddedtest.StartConfig(t, cfg)
}

// startGatewayOn runs a gateway whose event log lives on ns (an embedded
// server started by the test), like startGateway does with its own server.
func startGatewayOn(t testing.TB, ns *embedded.Server, o gatewayOptions) *gateway {
	t.Helper()
	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", ns.Name())
	o.logCfg.Logger = logger
	if o.logCfg.CreateTimeout == 0 {
		o.logCfg.CreateTimeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	elog, err := eventlog.Open(ctx, js, o.logCfg)
	if err != nil {
		t.Fatalf("open event log on %s: %v", ns.Name(), err)
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
	runCtx, stop := context.WithCancel(context.Background())
	g.cancel = stop
	go func() { g.done <- srv.Run(runCtx) }()
	g.http = httptest.NewServer(srv)
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", ns.Name(), logs.String())
		}
	})
	g.waitReady()
	return g
}

// waitFor polls cond until it holds or timeout passes. It is for state
// that offers no event to wait on (cluster membership, stream info).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMirrorAt waits until g's local stream holds seq.
func waitMirrorAt(t testing.TB, g *gateway, seq uint64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "mirror "+g.log.ReadStream()+" reaches "+fmt.Sprint(seq), func() error {
		st, err := g.log.State(context.Background())
		if err != nil {
			return err
		}
		if st.LastSeq < seq {
			return fmt.Errorf("last seq %d", st.LastSeq)
		}
		return nil
	})
}

// postEvent publishes through a gateway's HTTP publish API and returns the
// event's id.
func postEvent(t testing.TB, g *gateway, channel, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.http.URL+"/api/v1/channels/"+channel+"/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	tok := publisherTokenTB(t, []string{"*"})
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || out.ID == "" {
		t.Fatalf("publish through %s: status %d, body %s", g.nats.Name(), resp.StatusCode, b)
	}
	return out.ID
}

// publisherTokenTB mints a publisher token allowed on patterns.
func publisherTokenTB(t testing.TB, patterns []string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"publish": patterns}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stallProxy forwards TCP connections to a target and can stall them:
// while stalled, bytes are held (the connection stays up, as over a
// congested or partitioned WAN link) and flow again on resume.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled bool
	resumed chan struct{} // closed on resume; replaced on stall
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startStallProxy(t testing.TB, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, resumed: make(chan struct{})}
	close(p.resumed)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies src to dst, holding each chunk while the proxy is stalled.
func (p *stallProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.resumed
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall holds all traffic from now on.
func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled, p.resumed = true, make(chan struct{})
	}
}

// resume lets held and new traffic flow.
func (p *stallProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resumed)
	}
}

// cut closes every connection through the proxy, dropping held bytes, as a
// failed link does; new connections are accepted and flow.
func (p *stallProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	if p.stalled {
		p.stalled = false
		close(p.resumed)
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *stallProxy) close() {
	p.resume()
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// waitLogLine is gateway.waitLog failing t (a subtest) rather than the test
// that started the gateway.
func waitLogLine(t testing.TB, g *gateway, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(g.logs.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line of %s with %q within %s", g.nats.Name(), parts, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stallProxies stalls and resumes several links together.
type stallProxies []*stallProxy

func (ps stallProxies) stall() {
	for _, p := range ps {
		p.stall()
	}
}

func (ps stallProxies) resume() {
	for _, p := range ps {
		p.resume()
	}
}
