package main

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// fakeServer is a Superset-protocol server the test controls: it accepts
// cookie connections (without checking the token's signature: the baseline
// test covers that), takes batch publishes, and sends every event to every
// socket of its channel in order, except on the first socket, where it
// drops event 3, sends event 5 twice and sends event 8 before event 7.
type fakeServer struct {
	t        *testing.T
	upgrader websocket.Upgrader

	mu     sync.Mutex
	seq    int
	conns  map[string][]*websocket.Conn
	victim *websocket.Conn
	held   []byte
}

func newFakeServer(t *testing.T) *httptest.Server {
	f := &fakeServer{t: t, conns: make(map[string][]*websocket.Conn)}
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		f.mu.Lock()
		for _, cs := range f.conns {
			for _, c := range cs {
				_ = c.Close()
			}
		}
		f.mu.Unlock()
		srv.Close()
	})
	return srv
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		ck, err := r.Cookie("async-token")
		if err != nil {
			http.Error(w, "no cookie", http.StatusUnauthorized)
			return
		}
		ch, err := channelClaim(ck.Value)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ws, err := f.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[ch] = append(f.conns[ch], ws)
		if f.victim == nil {
			f.victim = ws
		}
		f.mu.Unlock()
		return
	}
	if r.URL.Path != batchPath {
		http.NotFound(w, r)
		return
	}
	sc := bufio.NewScanner(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	for sc.Scan() {
		ch, payload, _ := bytes.Cut(sc.Bytes(), []byte{'\t'})
		f.seq++
		body := append([]byte(`{"id":"100-`+strconv.Itoa(f.seq)+`",`), payload[1:]...)
		fr, _ := parseFrame(body)
		for _, ws := range f.conns[string(ch)] {
			f.send(ws, body, fr.n)
		}
	}
}

// send writes one event to a socket, mangling the victim's stream.
func (f *fakeServer) send(ws *websocket.Conn, body []byte, n int64) {
	write := func(b []byte) {
		if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
			f.t.Errorf("fake server write: %v", err)
		}
	}
	if ws != f.victim {
		write(body)
		return
	}
	switch n {
	case 3: // dropped
	case 5: // duplicated
		write(body)
		write(body)
	case 7: // held back until after 8
		f.held = append([]byte(nil), body...)
	case 8:
		write(body)
		write(f.held)
	default:
		write(body)
	}
}

// channelClaim reads the channel claim without verifying the signature.
func channelClaim(tok string) (string, error) {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return "", err
	}
	ch, _ := claims["channel"].(string)
	return ch, nil
}

func TestFanoutReportsLostDuplicatedAndReordered(t *testing.T) {
	srv := newFakeServer(t)
	o := testOptions(t, "ws"+srv.URL[len("http"):]+"/", func(o *options) {
		o.conns, o.channels, o.dialConc = 4, 2, 1
		o.maxEvents = 40 // 20 per channel: n = 1..20
		o.rate, o.duration = 400, 2*time.Second
		o.drain = 500 * time.Millisecond // the dropped event never comes
	})
	res := runScenario(t, "fanout", o)
	a := res.Accounting
	if res.Publish.Events != 40 {
		t.Fatalf("published %d events, want 40", res.Publish.Events)
	}
	if a.Lost != 1 || a.Duplicated != 1 || a.OutOfOrder != 1 {
		t.Fatalf("lost %d, duplicated %d, out of order %d; want 1, 1, 1", a.Lost, a.Duplicated, a.OutOfOrder)
	}
	if a.ClientsLost != 1 || a.ClientsDup != 1 || a.ClientsOOO != 1 {
		t.Fatalf("clients with loss/dup/reorder %d/%d/%d, want 1/1/1", a.ClientsLost, a.ClientsDup, a.ClientsOOO)
	}
	// By frame id: the repeated 5 and the late 7 do not increase.
	if a.IDRegress != 2 || a.IDRepeat != 1 {
		t.Fatalf("ids not increasing %d (repeated %d), want 2 (1)", a.IDRegress, a.IDRepeat)
	}
	d := res.Delivery
	if d.Frames != 4*20 || d.Received != d.Expected-1 || d.Outstanding != 1 {
		t.Fatalf("frames %d received %d expected %d outstanding %d; want 80, expected-1, 1", d.Frames, d.Received, d.Expected, d.Outstanding)
	}
}
