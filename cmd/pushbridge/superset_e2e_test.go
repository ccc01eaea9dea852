package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/configs"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// TestSupersetPathEndToEnd: events XADDed the way Superset's Flask side
// writes them reach a browser-style WebSocket client of serve (which
// mirrors Redis because REDIS_HOST is set) with the frame superset-websocket
// sends, and a client that reconnects with the id of its last frame gets
// exactly what it missed.
func TestSupersetPathEndToEnd(t *testing.T) {
	red := redistest.Start(t)
	rdb := red.Client()
	host, port, _ := net.SplitHostPort(red.Addr())
	vars := map[string]string{
		"JWT_SECRET": testSecret, "PORT": "0", "PUSHBRIDGE_HOST": "127.0.0.1",
		"PUSHBRIDGE_NATS_STORE_DIR": t.TempDir(), "REDIS_HOST": host, "REDIS_PORT": port,
		"REDIS_STREAM_READ_BLOCK_MS": "100",
	}
	cfg, _, err := configs.Load("", envOf(vars))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Statsd.Disabled = true
	base := serveInProcess(t, &cfg)
	waitMirrorLeader(t, base)

	const channel = "6494e437-0b2a-4c8c-9d7e-2f1f5c3b6a11"
	tok, _ := mintToken(testSecret, channel, nil, time.Minute, "channel", "publish")
	dial := func(lastID string) *websocket.Conn {
		u := "ws" + strings.TrimPrefix(base, "http") + "/"
		if lastID != "" {
			u += "?last_id=" + lastID
		}
		ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {"async-token=" + tok}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	read := func(ws *websocket.Conn) string {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	xadd := func(job string) {
		data := redistest.FlaskEvent(channel, job, 1, "done")
		if _, _, err := redistest.XAddFlask(context.Background(), rdb, "async-events-", channel, data); err != nil {
			t.Fatal(err)
		}
	}

	ws := dial("")
	xadd("job-1")
	frame := read(ws)
	id := frameID(t, frame)
	want := fmt.Sprintf(`{"id":%q,"channel_id":%q,"job_id":"job-1","user_id":1,"status":"done","errors":[],"result_url":"/api/v1/chart/data/qc-job-1"}`, id, channel)
	if frame != want {
		t.Fatalf("frame\n got %s\nwant %s", frame, want)
	}
	ws.Close()
	for _, job := range []string{"job-2", "job-3"} {
		xadd(job)
	}
	waitDispatched(t, base, 3)
	back := dial(id)
	for _, job := range []string{"job-2", "job-3"} {
		if f := read(back); !strings.Contains(f, `"job_id":"`+job+`"`) {
			t.Fatalf("missed frame %s, want %s", f, job)
		}
	}
	xadd("job-4")
	if f := read(back); !strings.Contains(f, `"job_id":"job-4"`) {
		t.Fatalf("live frame %s", f)
	}
}

func frameID(t *testing.T, frame string) string {
	t.Helper()
	start := strings.Index(frame, `"id":"`)
	if start < 0 {
		t.Fatalf("no id in %s", frame)
	}
	rest := frame[start+6:]
	return rest[:strings.IndexByte(rest, '"')]
}

// waitMirrorLeader waits until /ready reports the mirror as leader.
func waitMirrorLeader(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if body := get(t, base+"/ready"); strings.Contains(body, `"ingest":"leader`) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("mirror not leader: %s", get(t, base+"/ready"))
}

// waitDispatched waits until the gateway dispatched sequence n.
func waitDispatched(t *testing.T, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		body := get(t, base+"/ready")
		i := strings.Index(body, `"dispatched_seq":`)
		if i >= 0 {
			rest := body[i+len(`"dispatched_seq":`):]
			end := strings.IndexAny(rest, ",}")
			if v, _ := strconv.Atoi(rest[:end]); v >= n {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("sequence %d not dispatched: %s", n, get(t, base+"/ready"))
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// syncWriter serialises writes to a buffer shared by goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// String returns what was written so far.
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
