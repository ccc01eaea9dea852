package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// epoller watches idle sockets for readability with one epoll instance and
// one goroutine, so that an idle socket parks no goroutine and holds no
// read buffer. What a socket sends (pongs, closes) is read and parsed on
// the poller goroutine into a shared buffer.
//
// Go's runtime poller keeps its own registration of each socket; a socket
// may sit in several epoll sets, and the gateway's writes still go through
// the runtime when they must wait.
type epoller struct {
	epfd   int
	wakeFd int
	log    *slog.Logger

	mu    sync.Mutex
	conns map[uint64]*conn

	buf []byte
}

// wakeID is the epoll data of the eventfd that stops the loop; conn ids
// start at 1.
const wakeID = 0

func newEpoller(log *slog.Logger) (*epoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakeFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, wakeID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFd, &ev); err != nil {
		unix.Close(wakeFd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl add eventfd: %w", err)
	}
	return &epoller{epfd: epfd, wakeFd: wakeFd, log: log, conns: make(map[uint64]*conn), buf: make([]byte, 64<<10)}, nil
}

func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add starts watching c. c.raw must be set.
func (p *epoller) add(c *conn) error {
	p.mu.Lock()
	p.conns[c.id] = c
	p.mu.Unlock()
	var ctlErr error
	err := c.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP}
		setEventID(&ev, c.id)
		ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.conns, c.id)
		p.mu.Unlock()
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	c.polled.Store(true)
	// Data that arrived before the registration is reported by the
	// level-triggered epoll on the next wait.
	return nil
}

// remove stops watching c. Closing the socket would remove it from the
// epoll set as well; removing it first keeps the map small and stale
// events harmless (they carry an id the map no longer has).
func (p *epoller) remove(c *conn) {
	if !c.polled.CompareAndSwap(true, false) {
		return
	}
	_ = c.raw.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.mu.Lock()
	delete(p.conns, c.id)
	p.mu.Unlock()
}

// run waits for readable sockets until ctx ends, then closes the epoll
// instance.
func (p *epoller) run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		var one = [8]byte{1}
		_, _ = unix.Write(p.wakeFd, one[:])
	})
	defer stop()
	defer unix.Close(p.epfd)
	defer unix.Close(p.wakeFd)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for i := 0; i < n; i++ {
			id := eventID(&events[i])
			if id == wakeID {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c != nil {
				p.readable(c)
			}
		}
	}
}

// readable drains what c's socket holds.
func (p *epoller) readable(c *conn) {
	for {
		n, err := c.tryRead(p.buf)
		if n > 0 {
			if !c.onData(p.buf[:n]) {
				return
			}
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		if n < len(p.buf) {
			return // drained; epoll reports the next data
		}
	}
}
