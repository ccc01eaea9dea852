package bridge

import (
	"errors"
	"io"
	"net"
	"time"
)

// onData handles bytes the client sent. It reports false once the socket
// is done for (the caller stops reading).
func (c *conn) onData(data []byte) bool {
	var closeCode int
	var gotClose bool
	perr := c.parser.feed(data, func(f parsedFrame) {
		switch f.opcode {
		case opPing:
			c.lastPong.Store(time.Now().UnixNano())
			c.sendControl(controlFrame(opPong, f.payload))
		case opPong:
			c.lastPong.Store(time.Now().UnixNano())
		case opClose:
			gotClose = true
			closeCode = closeCodeOf(f.payload)
		default:
			c.srv.metrics.clientFramesIgnore.Inc()
		}
	})
	if perr != nil {
		c.logger().Info("client protocol error", "code", perr.code, "err", perr.reason)
		c.closeWith(perr.code, perr.reason, reasonProtocol)
		return false
	}
	if gotClose {
		c.peerClosedWith(closeCode)
		return false
	}
	return true
}

// peerClosedWith answers the client's close frame (or ends our own closing
// handshake) and drops the connection once the answer is out.
func (c *conn) peerClosedWith(code int) {
	c.mu.Lock()
	c.peerClosed = true
	closing := c.state >= stateClosing
	c.mu.Unlock()
	if closing {
		// Our close frame was sent or is queued; the handshake is over
		// once it is written (finish terminates then).
		c.mu.Lock()
		done := !c.writing && len(c.queue) == 0
		c.mu.Unlock()
		if done {
			c.terminate(reasonPeerClosed)
		}
		return
	}
	echo := code
	if echo == 1005 || !validCloseCode(echo) {
		echo = closeNormal
	}
	c.closeWith(echo, "", reasonPeerClosed)
}

// readFailed ends a socket whose read failed or reached EOF.
func (c *conn) readFailed(err error) {
	reason := reasonReadError
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		reason = reasonPeerClosed
	}
	c.terminate(reason)
}

// readLoop reads with a goroutine, for sockets the poller cannot watch.
func (c *conn) readLoop() {
	buf := make([]byte, 512)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 && !c.onData(buf[:n]) {
			return
		}
		if err != nil {
			c.readFailed(err)
			return
		}
	}
}
