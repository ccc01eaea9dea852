//go:build !linux

package bridge

import (
	"context"
	"errors"
	"log/slog"
)

// epoller is Linux-only; elsewhere every socket gets a reader goroutine.
type epoller struct{}

var errNoNetpoll = errors.New("netpoll is only available on Linux")

func newEpoller(*slog.Logger) (*epoller, error) { return nil, errNoNetpoll }
func (*epoller) add(*conn) error                { return errNoNetpoll }
func (*epoller) remove(*conn)                   {}
func (*epoller) run(ctx context.Context) error  { <-ctx.Done(); return nil }
func (c *conn) tryWrite([][]byte) (int, error)  { return 0, errNoNetpoll }
func (c *conn) tryRead([]byte) (int, error)     { return 0, errNoNetpoll }
