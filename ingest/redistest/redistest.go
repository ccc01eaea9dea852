// Package redistest starts real redis-server processes for tests, on free
// loopback ports with their own directories. A test that needs Redis skips
// with a loud message when no redis-server binary exists and CI is unset;
// under CI=true it fails instead.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// Server is a redis-server child process.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	args []string
	// tls, when set, makes the server listen with TLS only.
	tls *tls.Config
	// sentinelOf, when set, makes the server a Sentinel monitoring it
	// (master name "mymaster").
	sentinelOf string
}

// Binary returns the redis-server path, or skips (fails under CI=true).
func Binary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redis-server is not installed and CI=true: .ci/run installs it; install it with apt-get install redis-server")
		}
		tb.Skip("\n\n*** SKIPPING: redis-server is not installed; this test needs a real Redis.\n*** Install it (apt-get install redis-server) to run it; CI fails instead of skipping.\n")
	}
	return bin
}

// Start starts a redis-server on a free loopback port; it is stopped when
// the test ends. extra are extra redis-server arguments.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	s := &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir(), port: freePort(tb), args: extra}
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

func freePort(tb testing.TB) int { return embeddedtest.FreePort(tb) }

// StartTLS starts a redis-server that accepts only TLS connections, with
// the given certificate and key; client is the TLS configuration that
// trusts it (for the readiness check).
func StartTLS(tb testing.TB, certFile, keyFile string, client *tls.Config) *Server {
	tb.Helper()
	s := &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir(), port: freePort(tb), tls: client,
		args: []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-auth-clients", "no"}}
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

// StartSentinel starts a Redis Sentinel that monitors master under the
// name "mymaster" (quorum 1).
func StartSentinel(tb testing.TB, master string) *Server {
	tb.Helper()
	s := &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir(), port: freePort(tb), sentinelOf: master}
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Client returns a client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (SIGKILL: nothing is saved, as in a crash).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart (re)starts the server on the same port and directory. Data
// survives only when the server was started with persistence arguments.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var args []string
	switch {
	case s.sentinelOf != "":
		host, port, _ := net.SplitHostPort(s.sentinelOf)
		conf := filepath.Join(s.dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\nsentinel monitor mymaster %s %s 1\n", s.port, host, port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			s.tb.Fatal(err)
		}
		args = []string{conf, "--sentinel", "--loglevel", "warning"}
	case s.tls != nil:
		args = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"}
	default:
		args = []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}
	}
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), TLSConfig: s.tls})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil || strings.Contains(err.Error(), "NOAUTH") {
			return // up (a server with a password answers NOAUTH)
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s not ready: %v\n%s", s.Addr(), err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// XAddFlask writes one event the way Superset's Flask side does: to the
// channel's stream, then to the firehose, each capped with MAXLEN ~.
func XAddFlask(ctx context.Context, c redis.Cmdable, prefix, channel, data string) (channelID, firehoseID string, err error) {
	channelID, err = c.XAdd(ctx, &redis.XAddArgs{Stream: prefix + channel, MaxLen: 1000, Approx: true, Values: []any{"data", data}}).Result()
	if err != nil {
		return "", "", fmt.Errorf("xadd %s%s: %w", prefix, channel, err)
	}
	firehoseID, err = c.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "full", MaxLen: 1_000_000, Approx: true, Values: []any{"data", data}}).Result()
	if err != nil {
		return "", "", fmt.Errorf("xadd %sfull: %w", prefix, err)
	}
	return channelID, firehoseID, nil
}

// FlaskEvent renders an event payload as Superset's json.dumps does:
// ", " and ": " separators, keys in Flask's order.
func FlaskEvent(channel, jobID string, userID int, status string) string {
	return fmt.Sprintf(`{"channel_id": %q, "job_id": %q, "user_id": %d, "status": %q, "errors": [], "result_url": "/api/v1/chart/data/qc-%s"}`,
		channel, jobID, userID, status, jobID)
}
