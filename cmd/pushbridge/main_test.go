package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/configs"
	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

const testSecret = "0123456789abcdef0123456789abcdef-cmdtest"

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func runCmd(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, envOf(vars), &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCmd(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "pushbridge ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := runCmd(t, nil); code != 2 || !strings.Contains(errOut, "serve") {
		t.Fatalf("no args: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown: %d %q", code, errOut)
	}
}

func TestTokenCommand(t *testing.T) {
	code, out, errOut := runCmd(t, map[string]string{"JWT_SECRET": testSecret}, "token", "--channel", "abc", "--ttl", "1m")
	if code != 0 {
		t.Fatalf("token: %d %s", code, errOut)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(out), claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil }); err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if claims["channel"] != "abc" || claims["exp"] == nil {
		t.Fatalf("claims %v", claims)
	}
	code, out, _ = runCmd(t, nil, "token", "--secret", testSecret, "--publish", "team-*", "--publish", "x")
	claims = jwt.MapClaims{}
	_, _ = jwt.ParseWithClaims(strings.TrimSpace(out), claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil })
	if code != 0 || claims["publish"] == nil || claims["channel"] != nil {
		t.Fatalf("publisher token: %d %v", code, claims)
	}
	if code, _, _ := runCmd(t, nil, "token", "--secret", "short", "--channel", "a"); code != 1 {
		t.Fatalf("short secret: exit %d", code)
	}
	if code, _, _ := runCmd(t, nil, "token", "--secret", testSecret); code != 2 {
		t.Fatalf("neither --channel nor --publish: exit %d", code)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	code, _, errOut := runCmd(t, map[string]string{"JWT_SECRET": "too-short"}, "serve", "--config", "")
	if code != 1 || !strings.Contains(errOut, "jwtSecret") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestServePublishReceive runs serve in process on a free loopback port
// with its embedded NATS server, publishes with the publish command through
// the HTTP API, and receives the frame on a browser-style socket.
func TestServePublishReceive(t *testing.T) {
	vars := map[string]string{
		"JWT_SECRET": testSecret, "PORT": "0", "PUSHBRIDGE_HOST": "127.0.0.1",
		"PUSHBRIDGE_NATS_STORE_DIR": t.TempDir(), "STATSD_HOST": "127.0.0.1",
	}
	cfg, _, err := configs.Load("", envOf(vars))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Statsd.Disabled = true
	var logs bytes.Buffer
	log, _, _ := newLogger(&cfg, &logs)
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &cfg, log, listening) }()
	var addr net.Addr
	select {
	case addr = <-listening:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	base := "http://" + addr.String()
	waitReady(t, base)

	tok, _ := mintToken(testSecret, "ch1", nil, time.Minute, "channel", "publish")
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr.String()+"/ws", http.Header{"Cookie": {"async-token=" + tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	code, out, errOut := runCmd(t, vars, "publish", "--url", base, "--channel", "ch1", "--data", `{"job_id": "j", "status": "done"}`)
	if code != 0 {
		t.Fatalf("publish: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(frame) != `{"id":"`+id+`","job_id":"j","status":"done"}` {
		t.Fatalf("frame %s", frame)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("socket not closed with 1001: %v", err)
	}
	// No Redis is configured: serve says the Superset mirror is off, once.
	if n := strings.Count(logs.String(), "Superset Redis mirror off"); n != 1 {
		t.Fatalf("%d 'Superset Redis mirror off' lines, want 1; log:\n%s", n, logs.String())
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("not ready within 10s")
}

// TestPublishOverNATS publishes straight to the channel subject and prints
// the event id from the acknowledgement.
func TestPublishOverNATS(t *testing.T) {
	srv, elog := startNATSWithLog(t, embeddedtest.Options{TCP: true}, eventlog.Config{})
	code, out, errOut := runCmd(t, nil, "publish", "--nats-url", srv.ClientURL(), "--channel", "n1", "--data", `{"a":1}`, "--msg-id", "x1")
	if code != 0 {
		t.Fatalf("publish: %d %s", code, errOut)
	}
	if got, want := strings.TrimSpace(out), elog.ID(1).String(); got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
	code, out, _ = runCmd(t, nil, "publish", "--nats-url", srv.ClientURL(), "--channel", "n1", "--data", `{"a":1}`, "--msg-id", "x1")
	if code != 0 || !strings.Contains(out, "duplicate") {
		t.Fatalf("retry: %d %q", code, out)
	}
	if code, _, _ := runCmd(t, nil, "publish", "--nats-url", srv.ClientURL(), "--channel", "n1", "--data", `[1]`); code != 1 {
		t.Fatalf("array payload: exit %d", code)
	}
}

// writeConfigFile writes a config.json for a test and returns its path.
func writeConfigFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTokenUsesConfiguredClaims: the token command signs with the first
// HS* algorithm of jwtAlgorithms and names the claims as jwtChannelIdKey
// and publish.claim say, so the tokens it mints pass the gateway that
// configuration runs.
func TestTokenUsesConfiguredClaims(t *testing.T) {
	path := writeConfigFile(t, `{"jwtSecret": "`+testSecret+`", "jwtChannelIdKey": "chan",
		"jwtAlgorithms": ["HS512", "HS256"], "publish": {"claim": "may_publish"}}`)
	parse := func(out string) (*jwt.Token, jwt.MapClaims) {
		t.Helper()
		claims := jwt.MapClaims{}
		tok, err := jwt.ParseWithClaims(strings.TrimSpace(out), claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil })
		if err != nil {
			t.Fatalf("minted token does not verify: %v", err)
		}
		return tok, claims
	}
	code, out, errOut := runCmd(t, nil, "token", "--config", path, "--channel", "abc")
	if code != 0 {
		t.Fatalf("token: %d %s", code, errOut)
	}
	tok, claims := parse(out)
	if tok.Method.Alg() != "HS512" || claims["chan"] != "abc" || claims["channel"] != nil {
		t.Fatalf("browser token: alg %s, claims %v; want HS512 and chan=abc", tok.Method.Alg(), claims)
	}
	code, out, errOut = runCmd(t, nil, "token", "--config", path, "--publish", "team-*")
	if code != 0 {
		t.Fatalf("token --publish: %d %s", code, errOut)
	}
	if tok, claims = parse(out); tok.Method.Alg() != "HS512" || claims["may_publish"] == nil || claims["publish"] != nil {
		t.Fatalf("publisher token: alg %s, claims %v; want HS512 and may_publish", tok.Method.Alg(), claims)
	}

	// No HS* algorithm: a shared-secret token would be refused; say so.
	rsOnly := writeConfigFile(t, `{"jwtSecret": "`+testSecret+`", "jwtAlgorithms": ["RS256"]}`)
	if code, _, errOut := runCmd(t, nil, "token", "--config", rsOnly, "--channel", "abc"); code != 1 || !strings.Contains(errOut, "no HS* algorithm") {
		t.Fatalf("RS256 only: exit %d, stderr %q", code, errOut)
	}
	// A configuration that does not load is an error, not the defaults.
	broken := writeConfigFile(t, `{"jwtChannelIdKey": 7}`)
	if code, _, errOut := runCmd(t, nil, "token", "--config", broken, "--secret", testSecret, "--channel", "abc"); code != 1 || !strings.Contains(errOut, "jwtChannelIdKey") {
		t.Fatalf("broken config: exit %d, stderr %q", code, errOut)
	}
}

// TestPublishUsesConfiguration: publish --nats-url takes the subject prefix
// from a configuration that has no JWT secret (it needs none), and fails
// on one that does not load; publish --url mints its token with the
// configured algorithm and publish claim.
func TestPublishUsesConfiguration(t *testing.T) {
	t.Run("nats subject prefix", func(t *testing.T) {
		srv, elog := startNATSWithLog(t, embeddedtest.Options{TCP: true}, eventlog.Config{SubjectPrefix: "events"})
		path := writeConfigFile(t, `{"stream": {"subjectPrefix": "events"}}`)
		code, out, errOut := runCmd(t, nil, "publish", "--nats-url", srv.ClientURL(), "--config", path, "--channel", "n1", "--data", `{"a":1}`)
		if code != 0 {
			t.Fatalf("publish: %d %s", code, errOut)
		}
		if got, want := strings.TrimSpace(out), elog.ID(1).String(); got != want {
			t.Fatalf("printed %q, want %q", got, want)
		}
		broken := writeConfigFile(t, `{"stream": {"subjectPrefix": 1}}`)
		code, _, errOut = runCmd(t, nil, "publish", "--nats-url", srv.ClientURL(), "--config", broken, "--channel", "n1", "--data", `{"a":1}`)
		if code != 1 || !strings.Contains(errOut, "subjectPrefix") {
			t.Fatalf("broken config: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("http token", func(t *testing.T) {
		path := writeConfigFile(t, `{"jwtSecret": "`+testSecret+`", "jwtAlgorithms": ["HS384"], "publish": {"claim": "may_publish"},
			"port": 0, "host": "127.0.0.1", "statsd": {"disabled": true}, "nats": {"storeDir": "`+t.TempDir()+`"}}`)
		cfg, _, err := configs.Load(path, envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		base := serveInProcess(t, &cfg)
		code, out, errOut := runCmd(t, nil, "publish", "--url", base, "--config", path, "--channel", "c1", "--data", `{"a":1}`)
		if code != 0 {
			t.Fatalf("publish with the configured claim and algorithm: %d %s", code, errOut)
		}
		if _, _, err := eventlog.SplitID(strings.TrimSpace(out)); err != nil {
			t.Fatalf("printed %q: %v", out, err)
		}
	})
}

// serveInProcess runs serve in process on a free loopback port until the
// test ends and returns its base URL once it is ready.
func serveInProcess(t *testing.T, cfg *configs.Config) string {
	t.Helper()
	logs := &syncWriter{w: &bytes.Buffer{}}
	log, _, _ := newLogger(cfg, logs)
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, listening) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	select {
	case addr := <-listening:
		base := "http://" + addr.String()
		waitReady(t, base)
		return base
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	return ""
}

// TestPublishOverNATSWithCredentials: publish --nats-url presents the
// configured NATS credentials (PUSHBRIDGE_NATS_USER / _PASSWORD), and fails
// at once, naming the server, without them.
func TestPublishOverNATSWithCredentials(t *testing.T) {
	srv, elog := startNATSWithLog(t, embeddedtest.Options{TCP: true, Username: "pub", Password: "s3cret"}, eventlog.Config{})
	creds := map[string]string{"PUSHBRIDGE_NATS_USER": "pub", "PUSHBRIDGE_NATS_PASSWORD": "s3cret"}
	code, out, errOut := runCmd(t, creds, "publish", "--nats-url", srv.ClientURL(), "--channel", "c1", "--data", `{"a":1}`)
	if code != 0 {
		t.Fatalf("publish with credentials: %d %s", code, errOut)
	}
	if got, want := strings.TrimSpace(out), elog.ID(1).String(); got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
	code, _, errOut = runCmd(t, nil, "publish", "--nats-url", srv.ClientURL(), "--channel", "c1", "--data", `{"a":2}`)
	if code == 0 || !strings.Contains(errOut, "connect to") {
		t.Fatalf("publish without credentials: exit %d, %q; want a connect error", code, errOut)
	}
}

// startNATSWithLog starts an embedded server with a client listener and
// opens pushbridge's event log on it.
func startNATSWithLog(t *testing.T, o embeddedtest.Options, logCfg eventlog.Config) (*embedded.Server, *eventlog.Log) {
	t.Helper()
	srv, nc := embeddedtest.RunWith(t, o)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	elog, err := eventlog.Open(context.Background(), js, logCfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, elog
}
