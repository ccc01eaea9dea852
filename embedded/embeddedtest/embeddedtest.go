// Package embeddedtest starts real embedded NATS servers for tests: the one
// way pushbridge tests get NATS. Every server lives in its own temporary
// store directory, listens only on loopback when it listens at all, and is
// shut down by t.Cleanup.
package embeddedtest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushbridge/pushbridge/embedded"
)

// Options tune Run. The zero value is an in-process-only server.
type Options struct {
	// TCP opens a client listener on a free loopback port.
	TCP bool
	// Listen opens the client listener on this address instead (to
	// restart a server on the same port).
	Listen string
	// StoreDir reuses a store directory (to test restarts); empty means a
	// fresh t.TempDir().
	StoreDir string
	// Logger defaults to a logger that discards everything below Warn.
	Logger *slog.Logger
	// Domain is the server's JetStream domain ("": none).
	Domain string
	// Username and Password protect the client listener (in-process
	// connections from Run authenticate with them too).
	Username, Password string
}

// Run starts an embedded server and connects to it in-process. Both are
// closed when the test ends.
func Run(tb testing.TB) (*embedded.Server, *nats.Conn) {
	tb.Helper()
	return RunWith(tb, Options{})
}

// RunWith is Run with options.
func RunWith(tb testing.TB, o Options) (*embedded.Server, *nats.Conn) {
	tb.Helper()
	srv := Start(tb, o)
	nc, err := srv.Connect()
	if err != nil {
		tb.Fatalf("connect to embedded server: %v", err)
	}
	tb.Cleanup(nc.Close)
	return srv, nc
}

// Start starts an embedded server without connecting to it.
func Start(tb testing.TB, o Options) *embedded.Server {
	tb.Helper()
	cfg := embedded.Config{
		Name:     "test-" + time.Now().Format("150405.000000"),
		StoreDir: o.StoreDir,
		Logger:   o.Logger,
		Domain:   o.Domain,
		Username: o.Username,
		Password: o.Password,
	}
	if o.TCP {
		cfg.Listen = "127.0.0.1:-1"
	}
	if o.Listen != "" {
		cfg.Listen = o.Listen
	}
	return StartConfig(tb, cfg)
}

// StartConfig starts an embedded server from cfg (a cluster member, a leaf
// node, a gateway), filling in a fresh store directory and a quiet logger
// when cfg has none and short lame-duck timings; it is shut down when the
// test ends.
func StartConfig(tb testing.TB, cfg embedded.Config) *embedded.Server {
	tb.Helper()
	if cfg.Name == "" {
		cfg.Name = "test-" + time.Now().Format("150405.000000")
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = QuietLogger()
	}
	cfg.LameDuckDuration, cfg.LameDuckGracePeriod = time.Second, 10*time.Millisecond
	srv, err := embedded.New(cfg)
	if err != nil {
		tb.Fatalf("configure embedded server %s: %v", cfg.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		tb.Fatalf("start embedded server %s: %v", cfg.Name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// QuietLogger logs warnings and errors to stderr and drops the rest, so
// that test output stays readable while real problems still show.
func QuietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
