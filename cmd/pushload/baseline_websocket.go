package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// wsBaseline is the bare WebSocket baseline: a gorilla/websocket server
// that accepts the same cookie connections as a Superset server and writes
// each published event, framed once (websocket.PreparedMessage), to every
// socket of its channel, with no NATS, no history and no replay. Each
// socket has the gorilla pair of goroutines: a reader (for control frames)
// and a writer draining a bounded queue; a socket whose queue is full is
// closed (slow client). With coalesce, the writer instead sends every
// queued frame in one writev, the physical limit of the write path.
//
// Events arrive through the same HTTP publish API as pushbridge's (one
// event) or through batchPath (many), and are framed like pushbridge's:
// {"id":"<epoch>-<seq>", …payload}.
type wsBaseline struct {
	secret     []byte
	cookieName string
	channelKey string
	queueLen   int
	coalesce   bool
	log        *slog.Logger
	upgrader   websocket.Upgrader

	epoch int64
	seq   atomic.Uint64

	mu    sync.RWMutex
	chans map[string]map[*baseConn]struct{}
	// closing is set by shutdown; no socket is added after it.
	closing bool
	conns   sync.WaitGroup

	connections atomic.Int64
	deliveries  atomic.Int64
	slowDropped atomic.Int64
	writes      atomic.Int64
}

// baseConn is one socket of the baseline server.
type baseConn struct {
	ws      *websocket.Conn
	channel string
	q       chan outFrame
	stop    chan struct{}
	once    sync.Once
}

// outFrame is a prepared message, or raw frame bytes when coalescing.
type outFrame struct {
	pm  *websocket.PreparedMessage
	raw []byte
}

func newWSBaseline(secret, cookieName, channelKey string, queueLen int, coalesce bool, log *slog.Logger) *wsBaseline {
	return &wsBaseline{
		secret: []byte(secret), cookieName: cookieName, channelKey: channelKey, queueLen: queueLen, coalesce: coalesce, log: log,
		upgrader: websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 1024, WriteBufferPool: &sync.Pool{},
			CheckOrigin: func(*http.Request) bool { return true }},
		epoch: time.Now().Unix(),
		chans: make(map[string]map[*baseConn]struct{}),
	}
}

// ServeHTTP upgrades on any path, takes publishes, and serves /metrics and
// /health.
func (b *wsBaseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		b.serveWS(w, r)
		return
	}
	switch {
	case r.URL.Path == batchPath && r.Method == http.MethodPost:
		b.serveBatch(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/v1/channels/") && strings.HasSuffix(r.URL.Path, "/events") && r.Method == http.MethodPost:
		ch := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v1/channels/"), "/events")
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || len(body) < 2 || body[0] != '{' {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		id := b.publish(ch, body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q}`+"\n", id)
	case r.URL.Path == "/metrics":
		b.serveMetrics(w)
	case r.URL.Path == "/health":
		_, _ = w.Write([]byte("OK"))
	default:
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

// channelOf verifies the cookie JWT (HS256) and returns its channel claim.
func (b *wsBaseline) channelOf(r *http.Request) (string, error) {
	ck, err := r.Cookie(b.cookieName)
	if err != nil {
		return "", fmt.Errorf("no %s cookie: %w", b.cookieName, err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(ck.Value, claims, func(*jwt.Token) (any, error) { return b.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	ch, _ := claims[b.channelKey].(string)
	if ch == "" {
		return "", errors.New("token has no channel")
	}
	return ch, nil
}

func (b *wsBaseline) serveWS(w http.ResponseWriter, r *http.Request) {
	ch, err := b.channelOf(r)
	if err != nil {
		// Superset's server drops the TCP connection without an answer.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	ws, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &baseConn{ws: ws, channel: ch, q: make(chan outFrame, b.queueLen), stop: make(chan struct{})}
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		_ = ws.Close()
		return
	}
	set := b.chans[ch]
	if set == nil {
		set = make(map[*baseConn]struct{})
		b.chans[ch] = set
	}
	set[c] = struct{}{}
	b.conns.Add(2)
	b.mu.Unlock()
	b.connections.Add(1)
	if b.coalesce {
		// Raw writes bypass gorilla's writer: pings would race with them,
		// and Superset clients send none.
		ws.SetPingHandler(func(string) error { return nil })
	}
	go func() {
		defer b.conns.Done()
		b.readLoop(c)
	}()
	go func() {
		defer b.conns.Done()
		b.writeLoop(c)
	}()
}

// readLoop reads (and discards) until the socket fails, then closes it.
func (b *wsBaseline) readLoop(c *baseConn) {
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			b.closeConn(c)
			return
		}
	}
}

func (b *wsBaseline) writeLoop(c *baseConn) {
	var bufs net.Buffers
	for {
		var f outFrame
		select {
		case <-c.stop:
			return
		case f = <-c.q:
		}
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if !b.coalesce {
			if err := c.ws.WritePreparedMessage(f.pm); err != nil {
				b.closeConn(c)
				return
			}
			b.writes.Add(1)
			b.deliveries.Add(1)
			continue
		}
		bufs = append(bufs[:0], f.raw)
	more:
		for len(bufs) < 64 {
			select {
			case f = <-c.q:
				bufs = append(bufs, f.raw)
			default:
				break more
			}
		}
		n := int64(len(bufs))
		if _, err := bufs.WriteTo(c.ws.NetConn()); err != nil {
			b.closeConn(c)
			return
		}
		b.writes.Add(1)
		b.deliveries.Add(n)
	}
}

// closeConn unregisters and closes a socket once.
func (b *wsBaseline) closeConn(c *baseConn) {
	c.once.Do(func() {
		b.mu.Lock()
		if set := b.chans[c.channel]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(b.chans, c.channel)
			}
		}
		b.mu.Unlock()
		close(c.stop)
		_ = c.ws.Close()
		b.connections.Add(-1)
	})
}

// publish frames one event and queues it to the channel's sockets.
func (b *wsBaseline) publish(channel string, payload []byte) string {
	seq := b.seq.Add(1)
	id := strconv.FormatInt(b.epoch, 10) + "-" + strconv.FormatUint(seq, 10)
	body := make([]byte, 0, len(payload)+32)
	body = append(body, `{"id":"`...)
	body = append(body, id...)
	body = append(body, '"')
	if rest := bytes.TrimSpace(payload[1:]); len(rest) > 0 && rest[0] != '}' {
		body = append(body, ',')
	}
	body = append(body, payload[1:]...)
	var f outFrame
	if b.coalesce {
		f.raw = appendServerFrame(make([]byte, 0, len(body)+10), body)
	} else {
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, body)
		if err != nil {
			return id
		}
		f.pm = pm
	}
	b.mu.RLock()
	var slow []*baseConn
	for c := range b.chans[channel] {
		select {
		case c.q <- f:
		default:
			slow = append(slow, c)
		}
	}
	b.mu.RUnlock()
	for _, c := range slow {
		b.slowDropped.Add(1)
		b.closeConn(c)
	}
	return id
}

// appendServerFrame appends an unmasked, final text frame holding body.
func appendServerFrame(dst, body []byte) []byte {
	dst = append(dst, 0x81)
	switch n := len(body); {
	case n <= 125:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, body...)
}

// serveBatch publishes "<channel>\t<payload>\n" lines in order.
func (b *wsBaseline) serveBatch(w http.ResponseWriter, r *http.Request) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	n := 0
	for sc.Scan() {
		ch, payload, ok := bytes.Cut(sc.Bytes(), []byte{'\t'})
		if !ok || len(payload) < 2 || payload[0] != '{' {
			http.Error(w, fmt.Sprintf("line %d: want <channel>\\t<json object>", n+1), http.StatusBadRequest)
			return
		}
		b.publish(string(ch), payload)
		n++
	}
	if err := sc.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"published":%d}`+"\n", n)
}

func (b *wsBaseline) serveMetrics(w http.ResponseWriter) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\n", ms.HeapInuse)
	fmt.Fprintf(w, "go_memstats_stack_inuse_bytes %d\n", ms.StackInuse)
	fmt.Fprintf(w, "go_goroutines %d\n", runtime.NumGoroutine())
	fmt.Fprintf(w, "baseline_connections %d\n", b.connections.Load())
	fmt.Fprintf(w, "baseline_deliveries_total %d\n", b.deliveries.Load())
	fmt.Fprintf(w, "baseline_socket_writes_total %d\n", b.writes.Load())
	fmt.Fprintf(w, "baseline_disconnects_total{reason=\"slow_client\"} %d\n", b.slowDropped.Load())
	fmt.Fprintf(w, "baseline_events_total %d\n", b.seq.Load())
}

// shutdown closes every socket and waits for their goroutines, at most
// until ctx ends.
func (b *wsBaseline) shutdown(ctx context.Context) error {
	b.mu.Lock()
	b.closing = true
	var all []*baseConn
	for _, set := range b.chans {
		for c := range set {
			all = append(all, c)
		}
	}
	b.mu.Unlock()
	for _, c := range all {
		b.closeConn(c)
	}
	done := make(chan struct{})
	go func() { b.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("baseline sockets still open: %w", ctx.Err())
	}
}

// serveBaselineWS runs the baseline server on addr until ctx ends.
func serveBaselineWS(ctx context.Context, addr string, b *wsBaseline, ready chan<- net.Addr) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	b.log.Info("baseline-ws listening", "addr", ln.Addr().String(), "coalesce", b.coalesce, "queue", b.queueLen)
	if ready != nil {
		ready <- ln.Addr()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-errc
	return b.shutdown(sctx)
}
