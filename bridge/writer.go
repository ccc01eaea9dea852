package bridge

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// flush writes what is queued without blocking the caller. Whatever the
// socket does not take at once is handed to a writer goroutine that lives
// until the queue is empty. Any goroutine may call flush; only one writes
// at a time (c.writing).
func (c *conn) flush() {
	c.mu.Lock()
	c.dirty = false
	// Not attached yet: the upgrade flushes once it is.
	if c.writing || len(c.queue) == 0 || c.state == stateClosed || c.nc == nil {
		c.mu.Unlock()
		return
	}
	c.writing = true
	batch := c.takeLocked()
	c.mu.Unlock()
	for batch != nil {
		if c.raw == nil {
			c.startWriter(batch)
			return
		}
		n, err := c.tryWrite(batch)
		if err != nil {
			c.writeFailed(err)
			return
		}
		if rest, done := skipWritten(batch, n); len(rest) > 0 {
			c.wrote(done, n)
			c.startWriter(rest)
			return
		}
		batch = c.finish(batch, n)
	}
}

// takeLocked hands the queue to the caller, who owns the write side.
func (c *conn) takeLocked() [][]byte {
	batch := c.queue
	c.queue = c.spare
	c.spare = nil
	return batch
}

// finish accounts for a fully written batch. If more was queued meanwhile,
// the caller keeps the write side and gets the next batch; otherwise the
// write side is released and finish returns nil.
func (c *conn) finish(batch [][]byte, n int) [][]byte {
	c.srv.metrics.deliveries.Add(float64(len(batch)))
	c.srv.metrics.deliveryBytes.Add(float64(n))
	clear(batch)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued = max(c.queued-n, 0)
	if c.spare == nil && cap(batch) <= 16 {
		c.spare = batch[:0]
	}
	if c.state == stateClosed {
		c.writing = false
		return nil
	}
	if len(c.queue) > 0 {
		return c.takeLocked()
	}
	c.writing = false
	if c.deadlineSet && c.closeBy.IsZero() && c.raw != nil {
		// A writer goroutine's deadline would fail the next non-blocking
		// write (the poller reports an expired deadline before trying).
		// Without raw, every write goes through a writer, which sets its
		// own deadline first.
		_ = c.nc.SetWriteDeadline(time.Time{})
		c.deadlineSet = false
	}
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	if c.closeQueued {
		// The close frame is out: give the client CloseGrace to answer
		// it, then drop the connection (a slow client's timer is already
		// running).
		if c.peerClosed {
			go c.terminate("")
		} else if c.closeReason != reasonSlow {
			time.AfterFunc(c.srv.cfg.CloseGrace, func() { c.terminate("") })
		}
	}
	return nil
}

// wrote accounts for part of a batch written before a writer goroutine
// takes over the rest.
func (c *conn) wrote(frames, n int) {
	c.srv.metrics.deliveries.Add(float64(frames))
	c.srv.metrics.deliveryBytes.Add(float64(n))
	c.mu.Lock()
	c.queued = max(c.queued-n, 0)
	c.mu.Unlock()
}

// startWriter hands the write side to a goroutine that may block.
func (c *conn) startWriter(batch [][]byte) {
	c.srv.writers.Add(1)
	go func() {
		defer c.srv.writers.Done()
		c.writeLoop(batch)
	}()
}

// writeLoop writes with blocking writes, each bounded by WriteTimeout,
// until the queue is empty.
func (c *conn) writeLoop(batch [][]byte) {
	for batch != nil {
		c.setWriteDeadline()
		bufs := net.Buffers(batch)
		// WriteTo consumes bufs; batch keeps the frames for recycling.
		written, err := bufs.WriteTo(c.nc)
		c.srv.metrics.writeSyscalls.Inc()
		if err != nil {
			c.writeFailed(err)
			return
		}
		batch = c.finish(batch, int(written))
	}
}

// setWriteDeadline bounds the next write by WriteTimeout, or by closeBy
// when that is sooner. It holds c.mu so that closeSlowLocked's shorter
// deadline is never overwritten by a longer one.
func (c *conn) setWriteDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := time.Now().Add(c.srv.cfg.WriteTimeout)
	if !c.closeBy.IsZero() && c.closeBy.Before(d) {
		d = c.closeBy
	}
	_ = c.nc.SetWriteDeadline(d)
	c.deadlineSet = true
}

// skipWritten drops the first n bytes from bufs and returns what remains
// and how many buffers were written whole.
func skipWritten(bufs [][]byte, n int) (rest [][]byte, done int) {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
		done++
	}
	if len(bufs) > 0 && n > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs, done
}

// writeFailed closes a socket whose write failed. A slow client that did
// not take its close frame in time is not a send error: it was counted as
// a slow client already.
func (c *conn) writeFailed(err error) {
	c.mu.Lock()
	closed := c.state == stateClosed
	slow := c.closeReason == reasonSlow
	c.writing = false
	c.mu.Unlock()
	if closed || slow {
		c.terminate("")
		return
	}
	reason := reasonWriteError
	if errors.Is(err, os.ErrDeadlineExceeded) {
		reason = reasonWriteStall
	}
	c.srv.metrics.sendErrors.Inc()
	c.srv.metrics.incr(statsdSendError)
	c.logger().Debug("socket write failed", "err", err)
	c.terminate(reason)
}

// waitQueueBelow blocks a replay until the socket's queue holds at most
// limit bytes, so that a long replay is paced by the client instead of
// overflowing the queue.
func (c *conn) waitQueueBelow(ctx context.Context, limit int) error {
	for {
		c.mu.Lock()
		if c.state == stateClosed {
			c.mu.Unlock()
			return errConnClosed
		}
		if c.queued <= limit {
			c.mu.Unlock()
			return nil
		}
		if c.drained == nil {
			c.drained = make(chan struct{})
		}
		ch := c.drained
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var errConnClosed = errors.New("socket closed")
