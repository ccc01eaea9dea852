package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/configs"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// regionNode is one serve process's worth of gateway, run in-process from
// a config file an operator would write.
type regionNode struct {
	name string
	base string // http://host:port
	ws   string // ws://host:port/ws
	logs *syncWriter
}

// serveConfig writes configJSON to a file, loads it the way
// `pushbridge serve --config` does (no environment), runs serve until the
// test ends and waits until the gateway is ready.
func serveConfig(t *testing.T, name, configJSON string) *regionNode {
	t.Helper()
	return startServeConfig(t, name, configJSON).await(t)
}

// startingNode is a serve instance that may not be listening yet.
type startingNode struct {
	name      string
	logs      *syncWriter
	listening chan net.Addr
	done      chan error
}

// startServeConfig is serveConfig without the wait, for regions that must
// start together (a super-cluster's meta group needs its members).
func startServeConfig(t *testing.T, name, configJSON string) *startingNode {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".json")
	if err := os.WriteFile(path, []byte(configJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := configs.Load(path, envOf(nil))
	if err != nil {
		t.Fatalf("load %s config: %v", name, err)
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	log, _, err := newLogger(&cfg, logs)
	if err != nil {
		t.Fatal(err)
	}
	log = log.With("node", name)
	ctx, cancel := context.WithCancel(context.Background())
	sn := &startingNode{name: name, logs: logs, listening: make(chan net.Addr, 1), done: make(chan error, 1)}
	go func() { sn.done <- serve(ctx, &cfg, log, sn.listening) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-sn.done:
			if err != nil {
				t.Errorf("%s: serve returned %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s: serve did not stop", name)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, sn.logText())
		}
	})
	return sn
}

func (sn *startingNode) logText() string {
	sn.logs.mu.Lock()
	defer sn.logs.mu.Unlock()
	return sn.logs.w.String()
}

// await waits until the instance listens and reports ready.
func (sn *startingNode) await(t *testing.T) *regionNode {
	t.Helper()
	select {
	case addr := <-sn.listening:
		n := &regionNode{name: sn.name, base: "http://" + addr.String(), ws: "ws://" + addr.String() + "/ws", logs: sn.logs}
		waitReady(t, n.base)
		return n
	case err := <-sn.done:
		sn.done <- err // for the cleanup
		t.Fatalf("%s: serve: %v\n%s", sn.name, err, sn.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: serve did not start", sn.name)
	}
	return nil
}

// freeLoopback returns a free loopback address outside the ephemeral range.
func freeLoopback(t *testing.T) string { return embeddedtest.FreeAddr(t) }

// publishHTTP posts an event through node's publish API and returns its id.
func (n *regionNode) publishHTTP(t *testing.T, channel, body string) string {
	t.Helper()
	tok, err := mintToken(testSecret, "", []string{"*"}, time.Minute, "channel", "publish")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, n.base+"/api/v1/channels/"+channel+"/events", strings.NewReader(body))
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
		t.Fatalf("publish through %s: %d %s", n.name, resp.StatusCode, b)
	}
	return out.ID
}

// dial opens a browser-style socket on channel, resuming after lastID.
func (n *regionNode) dial(t *testing.T, channel, lastID string) *websocket.Conn {
	t.Helper()
	tok, err := mintToken(testSecret, channel, nil, time.Minute, "channel", "publish")
	if err != nil {
		t.Fatal(err)
	}
	u := n.ws
	if lastID != "" {
		u += "?last_id=" + lastID
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {"async-token=" + tok}})
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// readIDs reads n frames and returns their ids.
func readIDs(t *testing.T, ws *websocket.Conn, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %v: %v", ids, err)
		}
		ids = append(ids, frameID(t, string(b)))
	}
	return ids
}

// roam checks a client moving from one region to the other: it reads
// what is published in from, leaves, events are published in both
// regions, and it resumes in to with the id of its last frame.
func roam(t *testing.T, from, to *regionNode, channel string) {
	t.Helper()
	ws := from.dial(t, channel, "")
	var want []string
	for i := 0; i < 2; i++ {
		want = append(want, from.publishHTTP(t, channel, fmt.Sprintf(`{"before":%d}`, i)))
	}
	if got := readIDs(t, ws, 2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("in %s got %v, want %v", from.name, got, want)
	}
	ws.Close()
	var missed []string
	for i := 0; i < 2; i++ {
		missed = append(missed, from.publishHTTP(t, channel, fmt.Sprintf(`{"away":%d}`, i)))
		missed = append(missed, to.publishHTTP(t, channel, fmt.Sprintf(`{"away_other":%d}`, i)))
	}
	start := time.Now()
	back := to.dial(t, channel, want[len(want)-1])
	if got := readIDs(t, back, len(missed)); fmt.Sprint(got) != fmt.Sprint(missed) {
		t.Fatalf("resumed in %s got %v, want %v", to.name, got, missed)
	}
	t.Logf("%s → %s: whole %s after dialing", from.name, to.name, time.Since(start).Round(time.Microsecond))
	live := from.publishHTTP(t, channel, `{"live":true}`)
	if got := readIDs(t, back, 1); got[0] != live {
		t.Fatalf("live in %s: %s, want %s", to.name, got[0], live)
	}
}

// TestRegionConfigLeafNode builds the leaf node topology from config
// files: a hub whose embedded server accepts leaf nodes in JetStream
// domain "hub", and an edge whose embedded server is a leaf node with
// domain "edge" reading stream.mirror of the hub's stream.
func TestRegionConfigLeafNode(t *testing.T) {
	if testing.Short() {
		t.Skip("two serve instances")
	}
	began := time.Now()
	leaf := freeLoopback(t)
	hub := serveConfig(t, "hub", fmt.Sprintf(`{
		"host": "127.0.0.1", "port": 0, "jwtSecret": %q, "statsd": {"disabled": true},
		"nats": {"storeDir": %q, "embedded": {
			"serverName": "hub", "listen": "127.0.0.1:0", "domain": "hub",
			"leafNode": {"listen": %q}
		}}
	}`, testSecret, t.TempDir(), leaf))
	edge := serveConfig(t, "edge", fmt.Sprintf(`{
		"host": "127.0.0.1", "port": 0, "jwtSecret": %q, "statsd": {"disabled": true},
		"nats": {"storeDir": %q, "embedded": {
			"serverName": "edge", "domain": "edge",
			"leafNode": {"remotes": ["nats-leaf://%s"]}
		}},
		"stream": {"mirror": {"name": "PUSHBRIDGE_EDGE", "originDomain": "hub"}}
	}`, testSecret, t.TempDir(), leaf))
	t.Logf("hub and edge ready in %s", time.Since(began).Round(time.Millisecond))
	roam(t, hub, edge, "cfg-leaf")
	roam(t, edge, hub, "cfg-leaf2")
}

// TestRegionConfigSuperCluster builds a two-region super-cluster from
// config files: each region's embedded server is a cluster of its own
// with a gateway to the other; region A holds the stream
// (stream.placementCluster), region B reads a mirror placed in B
// (stream.mirror.placementCluster).
func TestRegionConfigSuperCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("two serve instances")
	}
	began := time.Now()
	gwA, gwB := freeLoopback(t), freeLoopback(t)
	region := func(name, stream string) string {
		route := freeLoopback(t)
		// A one-node cluster still lists its route: nats-server runs
		// clustered JetStream only with configured routes.
		return fmt.Sprintf(`{
			"host": "127.0.0.1", "port": 0, "jwtSecret": %q, "statsd": {"disabled": true},
			"nats": {"storeDir": %q, "embedded": {
				"serverName": "%s1", "listen": "127.0.0.1:0", "tags": ["region:%s"],
				"cluster": {"name": %q, "listen": %q, "routes": ["nats-route://%s"]},
				"gateway": {"name": %q, "listen": %q, "remotes": {"A": ["nats://%s"], "B": ["nats://%s"]}}
			}},
			"stream": %s
		}`, testSecret, t.TempDir(), name, name, name, route, route, name,
			map[string]string{"A": gwA, "B": gwB}[name], gwA, gwB, stream)
	}
	startA := startServeConfig(t, "A", region("A", `{"replicas": 1, "placementCluster": "A"}`))
	startB := startServeConfig(t, "B", region("B", `{"replicas": 1, "mirror": {"name": "PUSHBRIDGE_B", "placementCluster": "B"}}`))
	a := startA.await(t)
	b := startB.await(t)
	t.Logf("regions ready in %s", time.Since(began).Round(time.Millisecond))
	roam(t, a, b, "cfg-sc")
	roam(t, b, a, "cfg-sc2")
}
