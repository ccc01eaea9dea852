package bridge

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connState is where a socket is in its life.
type connState uint8

const (
	// stateJoining: registered on its channel, replaying last_id; live
	// events are held in joinBuf.
	stateJoining connState = iota
	// stateLive: live events are queued as they arrive.
	stateLive
	// stateClosing: a close frame is queued; nothing else is.
	stateClosing
	// stateClosed: the TCP connection is closed or being closed.
	stateClosed
)

// conn is one WebSocket. It has no goroutine of its own while idle: reads
// are driven by the poller (or, without netpoll, a reader goroutine), and
// writes happen on whichever goroutine queued a frame, without blocking. A
// writer goroutine exists only while the socket cannot take what is queued.
//
// Lock order: a channel's shard lock, then conn.mu.
type conn struct {
	srv     *Server
	id      uint64
	channel string
	remote  string
	// nc and raw are set once by attach, right after the handshake; the
	// socket is registered on its channel (joining, so nothing is written)
	// before that. raw allows non-blocking reads and writes; nil when the
	// connection is not a plain TCP socket (or netpoll is off).
	nc  net.Conn
	raw syscall.RawConn

	// lastPong is when the client last proved alive (UnixNano).
	lastPong atomic.Int64
	// polled is true while the socket is registered with the poller.
	polled atomic.Bool

	mu sync.Mutex
	// state and everything below are guarded by mu.
	state connState
	// lastSeq is the sequence of the last event queued to this socket: an
	// event at or below it is a duplicate and is dropped.
	lastSeq uint64
	// queue holds frames waiting for a writer; queued counts their bytes
	// plus those a writer has taken and not yet written.
	queue  [][]byte
	spare  [][]byte
	queued int
	// joinBuf holds live events that arrive while a replay runs.
	joinBuf      []*event
	joinBufBytes int
	// writing is true while one goroutine owns the socket's write side.
	writing bool
	// dirty is true while the socket is on the dispatcher's flush list.
	dirty bool
	// closeQueued is true once a close frame is in the queue;
	// peerClosed once the client's close frame arrived.
	closeQueued bool
	peerClosed  bool
	// deadlineSet is true while a write deadline set by a writer goroutine
	// is in force.
	deadlineSet bool
	// closeBy, when set, is when the socket's writes must be done: a slow
	// client's close frame gets until then (see closeSlowLocked).
	closeBy time.Time
	// drained is closed (and reset) when the writer empties the queue, for
	// replays waiting to queue more.
	drained chan struct{}

	// parser is owned by the reader.
	parser frameParser

	closeOnce sync.Once
	// closeReason is the reason recorded when the socket was closed.
	closeReason string
}

func newConn(srv *Server, id uint64, channel, remote string) *conn {
	c := &conn{srv: srv, id: id, channel: channel, remote: remote, state: stateJoining}
	c.parser.limit = srv.cfg.ReadLimit
	c.lastPong.Store(time.Now().UnixNano())
	return c
}

// attach gives the socket its connection once the handshake is done. It
// reports false if the socket was closed meanwhile (its held events
// overflowed); the caller then closes nc.
func (c *conn) attach(nc net.Conn, raw syscall.RawConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return false
	}
	c.nc, c.raw = nc, raw
	return true
}

func (c *conn) logger() *slog.Logger {
	return c.srv.log.With("conn_id", c.id, "channel", c.channel, "remote", c.remote)
}

// closeNet closes the connection, if it is attached. c.mu is held or the
// socket is past attach.
func (c *conn) closeNet() {
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

// deliver queues a live event. It is called by the dispatcher with the
// channel's shard lock held, and reports whether the socket must be added
// to the flush list, or flushed before the batch ends because a quarter of
// its queue is used.
func (c *conn) deliver(ev *event) (needsFlush, urgent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateJoining:
		c.joinBuf = append(c.joinBuf, ev)
		c.joinBufBytes += len(ev.frame)
		if c.joinBufBytes > c.srv.cfg.MaxSocketBufferBytes {
			c.closeSlowLocked("live events held during replay exceed maxSocketBufferBytes")
		}
		return false, false
	case stateLive:
		if ev.seq <= c.lastSeq {
			return false, false
		}
		c.lastSeq = ev.seq
		if !c.queueLocked(ev.frame) || c.writing {
			return false, false
		}
		urgent = c.queued > c.srv.cfg.MaxSocketBufferBytes/4
		if c.dirty {
			return false, urgent
		}
		c.dirty = true
		return true, urgent
	}
	return false, false
}

// queueLocked appends a frame, or closes the socket as a slow client when
// the frame would take its queue past MaxSocketBufferBytes.
func (c *conn) queueLocked(frame []byte) bool {
	if c.queued+len(frame) > c.srv.cfg.MaxSocketBufferBytes {
		c.closeSlowLocked("queue exceeds maxSocketBufferBytes")
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	return true
}

// sendControl queues a control frame (ping, pong) and writes it.
func (c *conn) sendControl(frame []byte) {
	c.mu.Lock()
	if c.state >= stateClosing {
		c.mu.Unlock()
		return
	}
	ok := c.queueLocked(frame)
	c.mu.Unlock()
	if ok {
		c.flush()
	}
}

// Close reasons: the disconnect metric's label.
const (
	reasonSlow        = "slow_client"
	reasonNoPong      = "no_pong"
	reasonPeerClosed  = "client_closed"
	reasonReadError   = "read_error"
	reasonWriteError  = "write_error"
	reasonProtocol    = "protocol_error"
	reasonShutdown    = "shutdown"
	reasonLimit       = "limit"
	reasonWriteStall  = "write_timeout"
	reasonCloseFailed = "close_timeout"
)

// closeWith starts the closing handshake: queue a close frame after what is
// already queued, then drop the connection once the client answers or
// CloseGrace passes.
func (c *conn) closeWith(code int, text, reason string) {
	c.mu.Lock()
	if c.state >= stateClosing {
		c.mu.Unlock()
		return
	}
	c.state = stateClosing
	c.closeReason = reason
	c.joinBuf = nil
	frame := closeFrame(code, text)
	// The close frame may exceed the queue bound by its few bytes; it is
	// always queued.
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.closeQueued = true
	c.mu.Unlock()
	c.flush()
}

// slowCloseText is the reason of the close frame a slow client gets.
const slowCloseText = "slow client: send queue full, resume with last_id"

// closeSlowLocked closes a socket whose queue overflowed. It never blocks:
// it runs on the dispatcher under the shard lock, or on a replay. The
// socket stops receiving events and its queued frames are dropped; a close
// frame (1008, slowCloseText) is queued behind the write in progress, if
// any, and the socket's writes get CloseGrace from now. When the client
// answers the close, the connection is closed; otherwise it is reset (TCP
// RST, discarding what the kernel still holds for it) once CloseGrace has
// passed. A client that reads nothing in that time never gets the close
// frame: its kernel buffer is full and the frame cannot be written. A
// socket whose handshake is not done is dropped at once (attach fails).
// c.mu is held.
func (c *conn) closeSlowLocked(detail string) {
	if c.state >= stateClosing {
		return
	}
	if ok, suppressed := c.srv.slowLog.allow(); ok {
		c.logger().Warn("closing slow client", "reason", detail, "max_socket_buffer_bytes", c.srv.cfg.MaxSocketBufferBytes,
			"queued_bytes", c.queued, "queued_frames", len(c.queue), "close_grace", c.srv.cfg.CloseGrace,
			"suppressed_since_last", suppressed)
	}
	c.srv.metrics.incr(statsdBackpressure)
	c.closeReason = reasonSlow
	c.queue, c.joinBuf = nil, nil
	c.queued, c.joinBufBytes = 0, 0
	if c.nc == nil {
		c.state = stateClosed
		// terminate takes the shard lock, which the caller may hold.
		go c.terminate(reasonSlow)
		return
	}
	c.state = stateClosing
	frame := closeFrame(closeSlow, slowCloseText)
	c.queue = [][]byte{frame}
	c.queued = len(frame)
	c.closeQueued = true
	c.closeBy = time.Now().Add(c.srv.cfg.CloseGrace)
	// A write in progress is bounded by the same deadline (writeLoop reads
	// closeBy under c.mu before each write).
	_ = c.nc.SetWriteDeadline(c.closeBy)
	time.AfterFunc(c.srv.cfg.CloseGrace, func() { c.terminate(reasonSlow) })
	if !c.writing {
		// The write may block until the deadline: never on the caller.
		c.writing = true
		c.startWriter(c.takeLocked())
	}
}

// terminate closes the TCP connection without a handshake and removes the
// socket from the node. It is idempotent and must not be called with the
// shard lock or c.mu held.
func (c *conn) terminate(reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.closeReason == "" {
			c.closeReason = reason
		}
		reason = c.closeReason
		c.state = stateClosed
		c.queue, c.joinBuf = nil, nil
		if c.drained != nil {
			close(c.drained)
			c.drained = nil
		}
		c.mu.Unlock()
		if c.srv.epoll != nil {
			c.srv.epoll.remove(c)
		}
		c.mu.Lock()
		if tcp, ok := c.nc.(*net.TCPConn); ok && reason == reasonSlow && !c.peerClosed {
			// Reset rather than close: what the kernel still holds for this
			// client is useless (it resumes with last_id) and would otherwise
			// linger in memory while a stalled peer drains it.
			_ = tcp.SetLinger(0)
		}
		c.closeNet()
		c.mu.Unlock()
		c.srv.unregister(c, reason)
	})
}

// isClosed reports whether the socket is closed or closing.
func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state >= stateClosing
}

// Close codes sent by the gateway.
const (
	closeGoingAway   = 1001 // shutdown: resume on another node with last_id
	closePolicy      = 1008
	closeSlow        = 1008 // slow client: resume with last_id
	closeTooBig      = 1009
	closeInternal    = 1011
	closeTryAgain    = 1013 // connection limit reached
	closeNormal      = 1000
	closeProtocolErr = 1002
)
