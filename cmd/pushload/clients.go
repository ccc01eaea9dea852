package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Client side cost. Each reading connection has one goroutine blocked in
// gorilla's NextReader (its stack stays small: the frame is parsed without
// a JSON decoder), a gorilla Conn with a small read buffer (readBuffer,
// default 1 KiB), no write buffer of its own (WriteBufferPool; the client
// only writes pong and close control frames, which need none), and its
// tracker. Frames are read into buffers from a shared pool. Measured on the
// 2-core machine this costs the client about 7 KiB per idle connection
// (see docs/loadtool.md), so 50,000 connections take about 350 MiB: an
// epoll reader would save a few KiB per connection at the price of a frame
// reader of our own, which this tool does not need.

// clientOptions configure how a pool connects.
type clientOptions struct {
	// target is the WebSocket URL (ws://, loopback only).
	target *url.URL
	// cookieName carries the token; tokens[ch] is channel ch's token.
	cookieName string
	tokens     []string
	// srcAddrs are the local addresses connections are spread over
	// (round robin by client index); nil lets the kernel choose.
	srcAddrs []net.IP
	// readBuffer is gorilla's read buffer size per connection.
	readBuffer  int
	dialTimeout time.Duration
	dialRetries int
	// slowRcvBuf is SO_RCVBUF for clients that never read (0: default).
	slowRcvBuf int
}

// client is one logical client: one browser tab on one channel, over all the
// sockets it opens (it reconnects with last_id).
type client struct {
	idx    int
	ch     int
	noRead bool

	mu sync.Mutex
	// Everything below is guarded by mu.
	tr         tracker
	subscribed bool
	ws         *websocket.Conn
	done       chan struct{} // closed when the socket's reader exits
	dropping   bool          // the tool is closing the socket on purpose
	closeErr   error         // why the last socket ended, if not on purpose
	lastRaw    string        // last id when it is not "<a>-<b>"

	// Resume accounting (reconnect scenario).
	resuming     bool
	resumeTarget int64 // whole when every n up to this was received
	resumeStart  int64 // UnixNano
	resumeDialed int64 // UnixNano when the resuming handshake completed
	resumedAt    int64 // UnixNano, 0 until whole
}

// lastID is the id to resume from: the highest id received.
func (c *client) lastIDLocked() string {
	if c.tr.idSeen {
		return strconv.FormatUint(c.tr.idA, 10) + "-" + strconv.FormatUint(c.tr.idB, 10)
	}
	return c.lastRaw
}

// pool owns the clients, their sockets and their reader goroutines. Readers
// block in socket reads and stop when their socket is closed: the pool
// closes every socket in closeAll and waits for the readers there.
type pool struct {
	opts    clientOptions
	st      *stats
	bk      *book
	clients []*client

	dialers   []*websocket.Dialer
	slowDials []*websocket.Dialer
	bufs      sync.Pool

	readers sync.WaitGroup
	open    atomic.Int64
	// dialErrors counts failed attempts; connectFailures clients that
	// could not connect at all; serverClosed sockets that ended without
	// the tool closing them.
	dialErrors      atomic.Int64
	connectFailures atomic.Int64
	serverClosed    atomic.Int64

	errMu     sync.Mutex
	errSample []string
}

func newPool(opts clientOptions, st *stats, bk *book) *pool {
	p := &pool{opts: opts, st: st, bk: bk}
	p.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	wbp := &sync.Pool{}
	mk := func(ip net.IP, rcvBuf int) *websocket.Dialer {
		nd := &net.Dialer{Timeout: opts.dialTimeout}
		if ip != nil {
			nd.LocalAddr = &net.TCPAddr{IP: ip}
		}
		if rcvBuf > 0 {
			nd.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		return &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: opts.dialTimeout,
			ReadBufferSize:   opts.readBuffer,
			WriteBufferSize:  256,
			WriteBufferPool:  wbp,
		}
	}
	addrs := opts.srcAddrs
	if len(addrs) == 0 {
		addrs = []net.IP{nil}
	}
	for _, ip := range addrs {
		p.dialers = append(p.dialers, mk(ip, 0))
		p.slowDials = append(p.slowDials, mk(ip, opts.slowRcvBuf))
	}
	return p
}

// add creates clients: n more, spread over the channels round robin from
// client index, reading or not.
func (p *pool) add(n int, noRead bool) []int {
	idxs := make([]int, 0, n)
	for range n {
		i := len(p.clients)
		p.clients = append(p.clients, &client{idx: i, ch: i % len(p.bk.names), noRead: noRead})
		idxs = append(idxs, i)
	}
	return idxs
}

// connectResult summarises a connect wave.
type connectResult struct {
	Attempted int     `json:"attempted"`
	Connected int     `json:"connected"`
	Failed    int     `json:"failed"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

// connect opens sockets for the given clients with at most conc dials in
// flight. resume dials with each client's last id.
func (p *pool) connect(ctx context.Context, idxs []int, conc int, resume bool) connectResult {
	start := time.Now()
	var ok atomic.Int64
	work := make(chan *client)
	var wg sync.WaitGroup
	for range max(1, min(conc, len(idxs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if p.connectOne(ctx, c, resume) == nil {
					ok.Add(1)
				}
			}
		}()
	}
feed:
	for _, i := range idxs {
		select {
		case work <- p.clients[i]:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	r := connectResult{Attempted: len(idxs), Connected: int(ok.Load()), Seconds: time.Since(start).Seconds()}
	r.Failed = r.Attempted - r.Connected
	if r.Seconds > 0 {
		r.PerSecond = float64(r.Connected) / r.Seconds
	}
	return r
}

// connectOne dials with bounded retries.
func (p *pool) connectOne(ctx context.Context, c *client, resume bool) error {
	backoff := 50 * time.Millisecond
	var err error
	for attempt := 0; attempt <= p.opts.dialRetries; attempt++ {
		if err = p.dial(ctx, c, resume); err == nil {
			return nil
		}
		p.dialErrors.Add(1)
		p.noteErr(err)
		if attempt == p.opts.dialRetries {
			break
		}
		select {
		case <-ctx.Done():
			p.connectFailures.Add(1)
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	p.connectFailures.Add(1)
	return err
}

// dial opens one socket for c and starts its reader.
func (p *pool) dial(ctx context.Context, c *client, resume bool) error {
	u := *p.opts.target
	if resume {
		c.mu.Lock()
		id := c.lastIDLocked()
		c.mu.Unlock()
		if id != "" {
			q := u.Query()
			q.Set("last_id", id)
			u.RawQuery = q.Encode()
		}
	}
	h := http.Header{}
	h.Set("Cookie", p.opts.cookieName+"="+p.opts.tokens[c.ch])
	d := p.dialers[c.idx%len(p.dialers)]
	if c.noRead {
		d = p.slowDials[c.idx%len(p.slowDials)]
	}
	dctx, cancel := context.WithTimeout(ctx, p.opts.dialTimeout)
	ws, resp, err := d.DialContext(dctx, u.String(), h)
	cancel()
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial %s: %s: %w", p.opts.target, resp.Status, err)
		}
		return fmt.Errorf("dial %s: %w", p.opts.target, err)
	}
	ws.SetReadLimit(1 << 20)
	done := make(chan struct{})
	c.mu.Lock()
	if !c.subscribed {
		// Everything allocated from now on was published after this
		// client subscribed and is expected.
		c.subscribed = true
		c.tr = newTracker(p.bk.last(c.ch))
		if !c.noRead {
			p.bk.subs[c.ch].Add(1)
		}
	}
	c.ws, c.done, c.dropping, c.closeErr = ws, done, false, nil
	if c.resuming {
		c.resumeDialed = time.Now().UnixNano()
	}
	c.mu.Unlock()
	p.open.Add(1)
	if c.noRead {
		close(done)
		return nil
	}
	p.readers.Add(1)
	go p.read(c, ws, done)
	return nil
}

// read is a socket's reader goroutine. It exits when the socket fails or is
// closed.
func (p *pool) read(c *client, ws *websocket.Conn, done chan struct{}) {
	defer p.readers.Done()
	defer close(done)
	defer p.open.Add(-1)
	for {
		mt, r, err := ws.NextReader()
		if err != nil {
			p.ended(c, err)
			return
		}
		if mt != websocket.TextMessage {
			continue // the next NextReader discards the rest
		}
		bp := p.bufs.Get().(*[]byte)
		b, err := readInto((*bp)[:0], r)
		if err != nil {
			p.bufs.Put(bp)
			p.ended(c, err)
			return
		}
		p.onFrame(c, b, time.Now().UnixNano())
		if cap(b) <= 64<<10 {
			*bp = b[:0]
			p.bufs.Put(bp)
		}
	}
}

// readInto reads r to its end into b.
func readInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b))
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// onFrame accounts for one received text frame.
func (p *pool) onFrame(c *client, b []byte, now int64) {
	p.st.frames.Add(1)
	f, ok := parseFrame(b)
	if !ok || !f.hasN || !f.hasTS {
		p.st.foreign.Add(1)
		return
	}
	if f.channel != nil && string(f.channel) != p.bk.names[c.ch] {
		p.st.wrongChannel.Add(1)
		return
	}
	c.mu.Lock()
	fresh := c.tr.observe(f.n)
	if f.id != nil {
		c.tr.observeID(f.id)
		if _, _, ok := parseID(f.id); !ok {
			c.lastRaw = string(f.id)
		}
	}
	if c.resuming && c.resumedAt == 0 && c.tr.wholeUpTo(c.resumeTarget) {
		c.resumedAt = now
	}
	c.mu.Unlock()
	p.st.record(f.tsNs, now, fresh)
}

// ended records why a socket's reader stopped.
func (p *pool) ended(c *client, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ws = nil
	if !c.dropping {
		c.closeErr = err
		p.serverClosed.Add(1)
		p.noteErr(err)
	}
}

func (p *pool) noteErr(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if len(p.errSample) >= 8 {
		return
	}
	msg := err.Error()
	if !slices.Contains(p.errSample, msg) {
		p.errSample = append(p.errSample, msg)
	}
}

func (p *pool) errors() []string {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return slices.Clone(p.errSample)
}

// drop closes the given clients' sockets abruptly (no close frame, as a
// lost network would) and waits for their readers to stop.
func (p *pool) drop(idxs []int) {
	var dones []chan struct{}
	for _, i := range idxs {
		c := p.clients[i]
		c.mu.Lock()
		ws, done := c.ws, c.done
		c.dropping = true
		c.mu.Unlock()
		if ws != nil {
			_ = ws.NetConn().Close()
			if c.noRead {
				p.open.Add(-1)
				c.mu.Lock()
				c.ws = nil
				c.mu.Unlock()
			}
		}
		if done != nil {
			dones = append(dones, done)
		}
	}
	for _, d := range dones {
		<-d
	}
}

// closeAll closes every socket and waits for every reader.
func (p *pool) closeAll() {
	idxs := make([]int, len(p.clients))
	for i := range idxs {
		idxs[i] = i
	}
	p.drop(idxs)
	p.readers.Wait()
}

// probeClosed reads what the never-reading clients' sockets hold, for up
// to wait, and counts the sockets the server has closed (the stream ended:
// EOF or reset), those still delivering buffered data when wait ran out
// (a server's close comes after everything it had queued, so these are
// undetermined), and those open and quiet (not closed).
func (p *pool) probeClosed(ctx context.Context, idxs []int, wait time.Duration) (closed, draining, open int) {
	var nClosed, nDraining, nOpen atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	deadline := time.Now().Add(wait)
	for _, i := range idxs {
		c := p.clients[i]
		c.mu.Lock()
		ws := c.ws
		c.mu.Unlock()
		if ws == nil {
			nClosed.Add(1)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return int(nClosed.Load()), int(nDraining.Load()), int(nOpen.Load())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nc := ws.NetConn()
			_ = nc.SetReadDeadline(deadline)
			buf := make([]byte, 64<<10)
			var lastData time.Time
			for {
				n, err := nc.Read(buf)
				if n > 0 {
					lastData = time.Now()
				}
				if err == nil {
					continue
				}
				switch {
				case !errors.Is(err, os.ErrDeadlineExceeded):
					nClosed.Add(1)
				case time.Since(lastData) < 250*time.Millisecond:
					nDraining.Add(1)
				default:
					nOpen.Add(1)
				}
				return
			}
		}()
	}
	wg.Wait()
	return int(nClosed.Load()), int(nDraining.Load()), int(nOpen.Load())
}
