//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// The process-level cluster harness: N `pushbridge serve` OS processes on
// loopback, each embedding one NATS node with its own store directory,
// together one JetStream cluster holding the event log at R3 — the
// "clustered gateways" topology of docs/deployment.md. Each node can be
// killed (SIGKILL), stopped gracefully (SIGTERM) and restarted with the same
// store directory, server name and ports.

// Credentials of the test cluster's NATS listeners.
const (
	clusterNATSUser      = "pushbridge"
	clusterNATSPassword  = "nats-password-for-tests"
	clusterRouteUser     = "route"
	clusterRoutePassword = "route-password-for-tests"
	clusterName          = "pushbridge-test"
	clusterStreamName    = "PUSHBRIDGE"
)

var (
	binaryOnce sync.Once
	binaryDir  string
	binaryPath string
	binaryErr  error
)

// TestMain removes the binary built for the process-level tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaryDir != "" {
		_ = os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}

// pushbridgeBinary builds this package's binary once per test process,
// without -race so that the node processes run at normal speed, and returns
// its path.
func pushbridgeBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		started := time.Now()
		binaryDir, binaryErr = os.MkdirTemp("", "pushbridge-bin-")
		if binaryErr != nil {
			return
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			binaryErr = fmt.Errorf("find the go command: %w", err)
			return
		}
		binaryPath = filepath.Join(binaryDir, "pushbridge")
		// The test runs in the package directory: "." is cmd/pushbridge.
		cmd := exec.Command(gobin, "build", "-o", binaryPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		t.Logf("built %s in %s", binaryPath, time.Since(started).Round(time.Millisecond))
	})
	if binaryErr != nil {
		t.Fatalf("build pushbridge: %v", binaryErr)
	}
	return binaryPath
}

// clusterOptions tune startGatewayCluster. Zero values take the defaults.
type clusterOptions struct {
	// Nodes is the number of gateways. Default 3.
	Nodes int
	// ShutdownSpread is sockets.shutdownSpread. Default 1s.
	ShutdownSpread time.Duration
	// LameDuck is nats.embedded.lameDuckDuration. Default 3s (the embedded
	// server's grace period before it closes clients is 1s).
	LameDuck time.Duration
	// RingPerChannel is replay.ringPerChannel; 0 keeps the default.
	RingPerChannel int
}

// gatewayCluster is a running cluster of gateway processes.
type gatewayCluster struct {
	t          *testing.T
	bin        string
	configPath string
	nodes      []*gatewayNode
}

// gatewayNode is one gateway: its fixed identity and ports, and the process
// currently running it, if any.
type gatewayNode struct {
	cluster   *gatewayCluster
	index     int
	name      string // PUSHBRIDGE_NATS_SERVER_NAME: the node's raft identity
	httpPort  int
	natsAddr  string // client listener
	routeAddr string
	dir       string // working directory; the store is dir/store
	logPath   string

	mu     sync.Mutex
	proc   *nodeProcess
	starts int
}

// nodeProcess is one run of a node.
type nodeProcess struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	// state and exitedAt are set before exited is closed.
	state    *os.ProcessState
	exitedAt time.Time
}

// startGatewayCluster starts the nodes together (the stream needs a quorum
// to be created) and waits until every one reports ready. Every process is
// killed when the test ends; on failure the tail of each node's log is
// printed.
func startGatewayCluster(t *testing.T, o clusterOptions) *gatewayCluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.ShutdownSpread == 0 {
		o.ShutdownSpread = time.Second
	}
	if o.LameDuck == 0 {
		o.LameDuck = 3 * time.Second
	}
	c := &gatewayCluster{t: t, bin: pushbridgeBinary(t)}
	root := t.TempDir()
	c.configPath = filepath.Join(root, "cluster-node.json")
	if err := os.WriteFile(c.configPath, clusterConfigJSON(o), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range o.Nodes {
		n := &gatewayNode{
			cluster:   c,
			index:     i,
			name:      fmt.Sprintf("pb%d", i+1),
			httpPort:  embeddedtest.FreePort(t),
			natsAddr:  embeddedtest.FreeAddr(t),
			routeAddr: embeddedtest.FreeAddr(t),
			dir:       filepath.Join(root, fmt.Sprintf("pb%d", i+1)),
		}
		n.logPath = filepath.Join(n.dir, "node.log")
		if err := os.MkdirAll(n.dir, 0o750); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stopForCleanup()
		}
		if t.Failed() {
			kept, err := os.MkdirTemp("", "pushbridge-cluster-logs-")
			for _, n := range c.nodes {
				t.Logf("--- last lines of %s's log:\n%s", n.name, tailFile(n.logPath, 60))
				if err == nil {
					b, _ := os.ReadFile(n.logPath)
					_ = os.WriteFile(filepath.Join(kept, n.name+".log"), b, 0o640)
				}
			}
			if err == nil {
				t.Logf("the nodes' whole logs are kept in %s", kept)
			}
		}
	})
	began := time.Now()
	for _, n := range c.nodes {
		n.Start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		n.WaitReady(ctx)
	}
	t.Logf("%d gateway processes ready in %s", len(c.nodes), time.Since(began).Round(time.Millisecond))
	return c
}

// clusterConfigJSON is the file every node reads, like
// configs/cluster-node.json; per-node values and secrets come from the
// environment. Shutdown timings are shorter than the example's so that a
// graceful stop fits a test.
func clusterConfigJSON(o clusterOptions) []byte {
	cfg := map[string]any{
		"logFormat":       "json",
		"statsd":          map[string]any{"disabled": true},
		"sockets":         map[string]any{"shutdownSpread": o.ShutdownSpread.String()},
		"shutdownTimeout": "20s",
		"nats": map[string]any{"embedded": map[string]any{
			"cluster":          map[string]any{"name": clusterName},
			"lameDuckDuration": o.LameDuck.String(),
		}},
		"stream": map[string]any{"maxMsgsPerChannel": 1000, "maxAge": "1h", "duplicateWindow": "10m"},
	}
	if o.RingPerChannel > 0 {
		cfg["replay"] = map[string]any{"ringPerChannel": o.RingPerChannel}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// routes lists every node's route URL, as PUSHBRIDGE_NATS_ROUTES wants.
func (c *gatewayCluster) routes() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, "nats-route://"+n.routeAddr)
	}
	return strings.Join(out, ",")
}

// env is the node's whole environment: nothing is inherited from the test
// process except PATH, so that no stray REDIS_* or JWT_SECRET reaches it.
func (n *gatewayNode) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"JWT_SECRET=" + testSecret,
		"PORT=" + strconv.Itoa(n.httpPort),
		"PUSHBRIDGE_HOST=127.0.0.1",
		"LOG_LEVEL=info",
		"PUSHBRIDGE_NATS_STORE_DIR=" + filepath.Join(n.dir, "store"),
		"PUSHBRIDGE_NATS_SERVER_NAME=" + n.name,
		"PUSHBRIDGE_NATS_LISTEN=" + n.natsAddr,
		"PUSHBRIDGE_NATS_CLUSTER_NAME=" + clusterName,
		"PUSHBRIDGE_NATS_CLUSTER_LISTEN=" + n.routeAddr,
		"PUSHBRIDGE_NATS_CLUSTER_ADVERTISE=" + n.routeAddr,
		"PUSHBRIDGE_NATS_ROUTES=" + n.cluster.routes(),
		"PUSHBRIDGE_NATS_EMBEDDED_USER=" + clusterNATSUser,
		"PUSHBRIDGE_NATS_EMBEDDED_PASSWORD=" + clusterNATSPassword,
		"PUSHBRIDGE_NATS_CLUSTER_USER=" + clusterRouteUser,
		"PUSHBRIDGE_NATS_CLUSTER_PASSWORD=" + clusterRoutePassword,
		"PUSHBRIDGE_STREAM_REPLICAS=3",
	}
}

// Start starts the node's process (again, after Kill or Term: same store
// directory, server name and ports). It does not wait for readiness.
func (n *gatewayNode) Start() {
	t := n.cluster.t
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.done() {
		t.Fatalf("%s: start while its process %d runs", n.name, n.proc.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	n.starts++
	fmt.Fprintf(logf, "=== test harness: start %d of %s at %s\n", n.starts, n.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.cluster.bin, "serve", "--config", n.cluster.configPath)
	cmd.Dir = n.dir
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test process dies without its cleanups (a -timeout panic),
	// the kernel kills the nodes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("%s: start: %v", n.name, err)
	}
	p := &nodeProcess{cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	n.proc = p
	go func() {
		_ = cmd.Wait()
		p.exitedAt = time.Now()
		p.state = cmd.ProcessState
		_ = logf.Close()
		close(p.exited)
	}()
}

// Restart starts a node whose process has exited.
func (n *gatewayNode) Restart() { n.cluster.t.Helper(); n.Start() }

func (p *nodeProcess) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// process returns the current process; the test fails if there is none.
func (n *gatewayNode) process() *nodeProcess {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		n.cluster.t.Fatalf("%s was never started", n.name)
	}
	return n.proc
}

// Running reports whether the node's process is alive.
func (n *gatewayNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.done()
}

// Kill sends SIGKILL and waits until the process is gone. It returns when
// the signal was sent.
func (n *gatewayNode) Kill() time.Time {
	t := n.cluster.t
	t.Helper()
	p := n.process()
	at := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("%s: SIGKILL: %v", n.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still running 10s after SIGKILL", n.name)
	}
	return at
}

// Term sends SIGTERM (a graceful stop) and returns when it was sent; see
// WaitExit.
func (n *gatewayNode) Term() time.Time {
	t := n.cluster.t
	t.Helper()
	p := n.process()
	at := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: SIGTERM: %v", n.name, err)
	}
	return at
}

// WaitExit waits for the current process to exit and returns its state and
// when it exited.
func (n *gatewayNode) WaitExit(timeout time.Duration) (*os.ProcessState, time.Time) {
	t := n.cluster.t
	t.Helper()
	p := n.process()
	select {
	case <-p.exited:
		return p.state, p.exitedAt
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", n.name, timeout)
		return nil, time.Time{}
	}
}

// stopForCleanup kills a process that still runs.
func (n *gatewayNode) stopForCleanup() {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil || p.done() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		n.cluster.t.Errorf("%s: process %d survived SIGKILL", n.name, p.cmd.Process.Pid)
	}
}

// Base is the node's HTTP base URL.
func (n *gatewayNode) Base() string { return fmt.Sprintf("http://127.0.0.1:%d", n.httpPort) }

// WSURL is the node's WebSocket URL, resuming after lastID when set.
func (n *gatewayNode) WSURL(lastID string) string {
	u := fmt.Sprintf("ws://127.0.0.1:%d/", n.httpPort)
	if lastID != "" {
		u += "?last_id=" + lastID
	}
	return u
}

var probeClient = &http.Client{Timeout: 2 * time.Second}

// Ready reports whether GET /ready answers 200.
func (n *gatewayNode) Ready() bool {
	resp, err := probeClient.Get(n.Base() + "/ready")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until the node reports ready; the test fails if its
// process exits or ctx ends first.
func (n *gatewayNode) WaitReady(ctx context.Context) {
	t := n.cluster.t
	t.Helper()
	p := n.process()
	for !n.Ready() {
		select {
		case <-p.exited:
			t.Fatalf("%s exited while starting (%v):\n%s", n.name, p.state, tailFile(n.logPath, 40))
		case <-ctx.Done():
			t.Fatalf("%s not ready: %v\n%s", n.name, ctx.Err(), tailFile(n.logPath, 40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Node returns the node with the given server name.
func (c *gatewayCluster) Node(name string) *gatewayNode {
	c.t.Helper()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node named %q", name)
	return nil
}

// StreamLeader asks the running nodes' client listeners for the event
// log's stream info and returns the name of the stream leader.
func (c *gatewayCluster) StreamLeader(ctx context.Context) (string, error) {
	var urls []string
	for _, n := range c.nodes {
		if n.Running() {
			urls = append(urls, "nats://"+n.natsAddr)
		}
	}
	if len(urls) == 0 {
		return "", errors.New("no node runs")
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(clusterNATSUser, clusterNATSPassword),
		nats.Name("cluster-test-probe"), nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, clusterStreamName)
	if err != nil {
		return "", fmt.Errorf("stream info: %w", err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("the stream has no leader")
	}
	return info.Cluster.Leader, nil
}

// WaitLeader polls until the stream has a leader other than not ("" for
// any) and returns its name and when it was first seen.
func (c *gatewayCluster) WaitLeader(ctx context.Context, not string) (string, time.Time) {
	c.t.Helper()
	var last error
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		leader, err := c.StreamLeader(qctx)
		cancel()
		if err == nil && leader != not {
			return leader, time.Now()
		}
		if err == nil {
			err = fmt.Errorf("leader is still %s", leader)
		}
		last = err
		select {
		case <-ctx.Done():
			c.t.Fatalf("no stream leader other than %q: %v (last: %v)", not, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// streamLeaderElectedSubject is where JetStream announces a new leader of
// the event log's stream (nats-server JSAdvisoryStreamLeaderElectedPre).
const streamLeaderElectedSubject = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + clusterStreamName

// leaderWatch receives the stream's leader-elected advisories through one
// node's client listener, so that a leader change is timed when it
// happens rather than when a poll sees it.
type leaderWatch struct {
	t  *testing.T
	ch chan leaderElected
}

// leaderElected is one advisory.
type leaderElected struct {
	leader string
	at     time.Time
}

// WatchLeader subscribes to the stream's leader elections through node
// (pick one that will stay up) and returns once the subscription is known
// to every other running node.
func (c *gatewayCluster) WatchLeader(ctx context.Context, through *gatewayNode) *leaderWatch {
	t := c.t
	t.Helper()
	connect := func(n *gatewayNode) *nats.Conn {
		nc, err := nats.Connect("nats://"+n.natsAddr, nats.UserInfo(clusterNATSUser, clusterNATSPassword),
			nats.Name("cluster-test-watch"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatalf("connect to %s: %v", n.name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	w := &leaderWatch{t: t, ch: make(chan leaderElected, 64)}
	probes := make(chan string, 64)
	nc := connect(through)
	_, err := nc.Subscribe(streamLeaderElectedSubject, func(m *nats.Msg) {
		if probe := m.Header.Get("Test-Probe"); probe != "" {
			probes <- probe
			return
		}
		var adv struct {
			Leader string `json:"leader"`
		}
		if json.Unmarshal(m.Data, &adv) == nil && adv.Leader != "" {
			select {
			case w.ch <- leaderElected{leader: adv.Leader, at: time.Now()}:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Interest travels over the routes asynchronously: publish a probe
	// through every other node until it arrives.
	for _, n := range c.nodes {
		if n == through || !n.Running() {
			continue
		}
		pc := connect(n)
		for got := false; !got; {
			msg := nats.NewMsg(streamLeaderElectedSubject)
			msg.Header.Set("Test-Probe", n.name)
			if err := pc.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-probes:
				got = p == n.name
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("leader watch through %s: no probe from %s: %v", through.name, n.name, ctx.Err())
			}
		}
		pc.Close()
	}
	return w
}

// Next waits for the election of a leader other than not.
func (w *leaderWatch) Next(ctx context.Context, not string) leaderElected {
	w.t.Helper()
	for {
		select {
		case e := <-w.ch:
			if e.leader != not {
				return e
			}
		case <-ctx.Done():
			w.t.Fatalf("no stream leader other than %s elected: %v", not, ctx.Err())
		}
	}
}

// Metrics scrapes a node's /metrics and returns its pushbridge_* samples,
// keyed by name with labels as exposed (`name{label="v"}`).
func (n *gatewayNode) Metrics() (map[string]float64, error) {
	resp, err := probeClient.Get(n.Base() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "pushbridge_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// tailFile returns the last n lines of a node's log, leaving out the
// route dial errors a node repeats every second while another is down.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if !bytes.Contains(l, []byte("Error trying to connect to route")) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// countLogLines counts the lines of a node's log that contain substr.
func countLogLines(path, substr string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte(substr))
}
