package bridge

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"
)

// maxIovec stays under the kernel's IOV_MAX (1024).
const maxIovec = 512

// tryWrite writes as much of bufs as the socket takes right now and never
// waits: it returns the bytes written, which may be fewer than offered.
func (c *conn) tryWrite(bufs [][]byte) (int, error) {
	var total int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			chunk := bufs
			if len(chunk) > maxIovec {
				chunk = chunk[:maxIovec]
			}
			var n int
			var err error
			if len(chunk) == 1 {
				n, err = unix.Write(int(fd), chunk[0])
			} else {
				n, err = unix.Writev(int(fd), chunk)
			}
			c.srv.metrics.writeSyscalls.Inc()
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				return true
			}
			if err != nil {
				werr = err
				return true
			}
			total += n
			var want int
			for _, b := range chunk {
				want += len(b)
			}
			if n < want {
				return true // the socket buffer is full
			}
			bufs = bufs[len(chunk):]
		}
		return true
	})
	if err != nil {
		return total, err
	}
	return total, werr
}

// tryRead reads what the socket holds right now into buf, without waiting.
// It returns 0, nil when nothing is there and io.EOF when the peer closed.
func (c *conn) tryRead(buf []byte) (int, error) {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if !errors.Is(rerr, unix.EINTR) {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, unix.EAGAIN):
		return 0, nil
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
