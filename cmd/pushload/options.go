package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// options are the flags of the client-side scenarios. Zero values mean the
// defaults set by registerCommon.
type options struct {
	// Target and clients.
	url        string
	conns      int
	channels   int
	secret     string
	cookieName string
	channelKey string
	tokenTTL   time.Duration
	srcAddrs   int
	readBuffer int
	dialConc   int
	dialTO     time.Duration
	dialRetry  int

	// Publishing.
	publish       string
	natsURL       string
	subjectPrefix string
	msgID         bool
	httpURL       string
	pubToken      string
	publishClaim  string
	redisAddr     string
	redisPrefix   string
	workers       int
	rate          float64
	pad           int

	// Timing and bounds.
	duration   time.Duration
	settle     time.Duration
	drain      time.Duration
	maxEvents  int64
	maxRuntime time.Duration

	// Reporting.
	out        string
	serverPID  int
	metricsURL string
	quiet      bool

	// ramp
	rateStart    float64
	rateStep     float64
	rateMax      float64
	stepDuration time.Duration
	p99Bound     time.Duration

	// reconnect
	reconnectK    int
	behind        int
	rounds        int
	reconnectConc int

	// slow
	slowK      int
	slowRcvBuf int

	// Derived by validate.
	target   *url.URL
	httpBase *url.URL
}

// Hard caps: whatever the flags say, a run never exceeds these.
const (
	maxConns      = 200_000
	maxChannels   = 1_000_000
	hardMaxEvents = 100_000_000
	hardRuntime   = 2 * time.Hour
)

// registerCommon adds the flags every client-side scenario has.
func registerCommon(fs *flag.FlagSet, o *options, lookupEnv func(string) (string, bool)) {
	secret, _ := lookupEnv("JWT_SECRET")
	fs.StringVar(&o.url, "url", "ws://127.0.0.1:8080/", "WebSocket URL of the server under test (loopback only; any path)")
	fs.IntVar(&o.conns, "conns", 1000, "WebSocket connections (logical clients)")
	fs.IntVar(&o.channels, "channels", 500, "channels; client i subscribes to channel i mod channels")
	fs.StringVar(&o.secret, "secret", secret, "JWT secret shared with the server (default $JWT_SECRET)")
	fs.StringVar(&o.cookieName, "cookie-name", "async-token", "cookie carrying the browser JWT")
	fs.StringVar(&o.channelKey, "channel-key", "channel", "JWT claim naming the channel")
	fs.DurationVar(&o.tokenTTL, "token-ttl", time.Hour, "browser token lifetime (exp claim)")
	fs.IntVar(&o.srcAddrs, "src-addrs", 0, "loopback source addresses to spread connections over (127.0.0.2, …); 0: one per 20,000 connections, at least 4")
	fs.IntVar(&o.readBuffer, "read-buffer", 1024, "client read buffer per connection, bytes")
	fs.IntVar(&o.dialConc, "dial-concurrency", 256, "connection handshakes in flight at once")
	fs.DurationVar(&o.dialTO, "dial-timeout", 10*time.Second, "timeout of one handshake")
	fs.IntVar(&o.dialRetry, "dial-retries", 2, "retries of a failed handshake")

	fs.StringVar(&o.publish, "publish", "http", "how events are published: nats, http, redis, batch (pushload baseline-ws) or none")
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4333", "NATS URL for --publish nats")
	fs.StringVar(&o.subjectPrefix, "subject-prefix", "push", "subject prefix for --publish nats (channel C is <prefix>.C)")
	fs.BoolVar(&o.msgID, "msg-id", false, "set Nats-Msg-Id on NATS publishes (exercises the stream's dedup)")
	fs.StringVar(&o.httpURL, "http-url", "", "base URL of the HTTP publish API and /metrics (default: --url's host, http)")
	fs.StringVar(&o.pubToken, "publish-token", "", "bearer token for --publish http (default: minted from --secret)")
	fs.StringVar(&o.publishClaim, "publish-claim", "publish", "claim of a minted publisher token")
	fs.StringVar(&o.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address for --publish redis")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "async-events-", "Superset's GLOBAL_ASYNC_QUERIES_REDIS_STREAM_PREFIX")
	fs.IntVar(&o.workers, "publishers", 0, "publishing workers (channels are split among them); 0: nats 1, http 16, redis 4, batch 1")
	fs.Float64Var(&o.rate, "rate", 1000, "events per second (over all channels)")
	fs.IntVar(&o.pad, "pad", 0, "bytes of padding added to each event (key \"pad\")")

	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to publish (idle: how long to hold)")
	fs.DurationVar(&o.settle, "settle", time.Second, "pause after connecting, before publishing or measuring")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "how long to wait for outstanding deliveries after publishing; events still missing then are lost")
	fs.Int64Var(&o.maxEvents, "max-events", 10_000_000, "cap on events published")
	fs.DurationVar(&o.maxRuntime, "max-runtime", 30*time.Minute, "hard cap on the whole run")

	fs.StringVar(&o.out, "out", "", "write the JSON result to this file")
	fs.IntVar(&o.serverPID, "server-pid", 0, "PID of the server (RSS and CPU from /proc)")
	fs.StringVar(&o.metricsURL, "metrics-url", "", "Prometheus /metrics of the server (default: <http-url>/metrics; \"none\" to skip)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
}

// validate checks the options and derives the target URLs.
func (o *options) validate() error {
	var err error
	if o.target, err = loopbackURL(o.url, "ws"); err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	hb := o.httpURL
	if hb == "" {
		hb = "http://" + o.target.Host
	}
	if o.httpBase, err = loopbackURL(hb, "http"); err != nil {
		return fmt.Errorf("--http-url: %w", err)
	}
	switch o.metricsURL {
	case "":
		o.metricsURL = strings.TrimSuffix(o.httpBase.String(), "/") + "/metrics"
	case "none":
	default:
		if _, err := loopbackURL(o.metricsURL, "http"); err != nil {
			return fmt.Errorf("--metrics-url: %w", err)
		}
	}
	switch {
	case o.conns < 1 || o.conns > maxConns:
		return fmt.Errorf("--conns: %d is outside [1, %d]", o.conns, maxConns)
	case o.channels < 1 || o.channels > maxChannels:
		return fmt.Errorf("--channels: %d is outside [1, %d]", o.channels, maxChannels)
	case len(o.secret) < minSecretLength:
		return errors.New("--secret (or $JWT_SECRET) must be at least 32 characters")
	case o.rate < 0:
		return errors.New("--rate must not be negative")
	case o.duration <= 0 || o.duration > hardRuntime:
		return fmt.Errorf("--duration must be in (0, %s]", hardRuntime)
	case o.maxRuntime <= 0 || o.maxRuntime > hardRuntime:
		return fmt.Errorf("--max-runtime must be in (0, %s]", hardRuntime)
	case o.maxEvents <= 0 || o.maxEvents > hardMaxEvents:
		return fmt.Errorf("--max-events must be in (0, %d]", hardMaxEvents)
	case o.readBuffer < 128:
		return errors.New("--read-buffer must be at least 128")
	case o.dialConc < 1:
		return errors.New("--dial-concurrency must be positive")
	case o.pad < 0 || o.pad > 1<<20:
		return errors.New("--pad must be in [0, 1 MiB]")
	}
	switch o.publish {
	case "nats":
		nu, err := url.Parse(o.natsURL)
		if err != nil || nu.Host == "" {
			return fmt.Errorf("--nats-url %q: want nats://host:port", o.natsURL)
		}
		if _, err := loopbackHostPort(nu.Host); err != nil {
			return fmt.Errorf("--nats-url: %w", err)
		}
	case "redis":
		if o.redisAddr, err = loopbackHostPort(o.redisAddr); err != nil {
			return fmt.Errorf("--redis-addr: %w", err)
		}
	case "http", "batch", "none":
	default:
		return fmt.Errorf("--publish %q: want nats, http, redis, batch or none", o.publish)
	}
	if o.workers == 0 {
		o.workers = map[string]int{"nats": 1, "http": 16, "redis": 4, "batch": 1, "none": 1}[o.publish]
	}
	if o.srcAddrs == 0 {
		o.srcAddrs = autoSourceAddrs(o.conns + o.slowK)
	}
	return nil
}
