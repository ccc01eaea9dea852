package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the gateway. Zero fields take the defaults documented on
// each field; they match superset-websocket's defaults where it has the
// setting.
type Config struct {
	// JWTSecret verifies browser tokens and publisher tokens. For HS*
	// algorithms it is the shared secret (at least 32 characters, as
	// Superset requires); for RS*, PS*, ES* and EdDSA it is a PEM public key.
	JWTSecret string
	// JWTAlgorithms lists the accepted signing algorithms. Default HS256.
	// "none" is never accepted.
	JWTAlgorithms []string
	// JWTCookieName is the cookie that carries the browser token. Default
	// "async-token" (Superset's GLOBAL_ASYNC_QUERIES_JWT_COOKIE_NAME).
	JWTCookieName string
	// JWTChannelIDKey is the claim that names the channel. Default "channel".
	JWTChannelIDKey string
	// AllowedOrigins restricts the Origin header of upgrades. Empty or
	// containing "*" allows every origin.
	AllowedOrigins []string

	// PingInterval is how often every socket is pinged. Default 20s.
	PingInterval time.Duration
	// PongTimeout terminates a socket that has not answered a ping for this
	// long. Default 60s.
	PongTimeout time.Duration

	// MaxTotalConnections caps the sockets of this node; 0 means no cap.
	MaxTotalConnections int
	// MaxConnectionsPerChannel caps the sockets of one channel on this
	// node; 0 means no cap.
	MaxConnectionsPerChannel int
	// MaxSocketBufferBytes caps the bytes queued for one socket. A socket
	// that falls further behind is closed (1008, "slow client") and resumes
	// with last_id; the close frame is best effort (see CloseGrace).
	// Default 1 MiB.
	MaxSocketBufferBytes int
	// SendBufferBytes sets each socket's kernel send buffer (SO_SNDBUF).
	// The kernel's autotuning grows it to megabytes, which a client that
	// stops reading fills before its queue counts anything, multiplied by
	// every such client; a fixed buffer bounds that memory and lets slow
	// clients be detected in seconds. Default 64 KiB; -1 leaves the kernel's
	// autotuning on.
	SendBufferBytes int
	// WriteTimeout closes a socket whose pending write makes no progress
	// for this long. Default 10s.
	WriteTimeout time.Duration
	// ReadLimit is the largest message a client may send, in bytes; larger
	// ones close the socket with 1009. Superset clients send nothing.
	// Default 64 KiB.
	ReadLimit int
	// CloseGrace is how long a closing socket waits for the client's close
	// frame before the TCP connection is dropped. A slow client's close
	// frame, and the write in progress before it, must be out within
	// CloseGrace of the decision, else the connection is reset without it.
	// Default 1s.
	CloseGrace time.Duration
	// ShutdownSpread spreads the 1001 closes of a shutdown over this long,
	// so that clients do not all reconnect at the same instant. Default 1s.
	ShutdownSpread time.Duration

	// RingBytes is the memory for recently dispatched events, kept per
	// channel so that most reconnects replay without touching JetStream.
	// Default 64 MiB.
	RingBytes int64
	// RingPerChannel caps the events kept per channel. Default 1000.
	RingPerChannel int
	// WarmEvents is how far behind the stream's end the live consumer
	// starts at boot, filling the ring before the node reports ready.
	// Default 100000.
	WarmEvents uint64
	// ReplayConcurrency bounds the replays read from JetStream at once.
	// Default 32.
	ReplayConcurrency int
	// ReplayTimeout bounds one replay. Default 15s.
	ReplayTimeout time.Duration
	// ReplaySkew is how far before a Redis-style last_id's time the replay
	// starts looking, to absorb clock differences between Redis and NATS.
	// Default 5s.
	ReplaySkew time.Duration

	// DisablePublish turns off the HTTP publish API.
	DisablePublish bool
	// PublishClaim is the claim of a publisher token listing the channel
	// patterns it may publish to. Default "publish".
	PublishClaim string
	// MaxPayloadBytes is the largest event payload accepted by the publish
	// API. Default: the stream's MaxMsgSize (or, when it is unlimited, the
	// NATS server's max_payload) less publishHeaderRoom (1 KiB) for the
	// headers stored with the event, which JetStream counts against the
	// same limit. A payload that fits the cap but not the stream with its
	// headers is refused with 413 as well.
	MaxPayloadBytes int

	// DisableNetpoll makes every socket use a reader goroutine instead of
	// the shared epoll loop (Linux). Sockets that are not plain TCP always
	// do.
	DisableNetpoll bool

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the Prometheus metrics. Default: a new registry,
	// available through Server.Gatherer.
	Registerer prometheus.Registerer
	// Statsd receives Superset's statsd counters. Nil disables them.
	Statsd StatsdClient

	// streamCheckInterval is how often the stream's state is read for
	// /ready (tests shorten it). Default 1s.
	streamCheckInterval time.Duration
}

func (c *Config) setDefaults() {
	if len(c.JWTAlgorithms) == 0 {
		c.JWTAlgorithms = []string{"HS256"}
	}
	if c.JWTCookieName == "" {
		c.JWTCookieName = "async-token"
	}
	if c.JWTChannelIDKey == "" {
		c.JWTChannelIDKey = "channel"
	}
	setDuration(&c.PingInterval, 20*time.Second)
	setDuration(&c.PongTimeout, 60*time.Second)
	setDuration(&c.WriteTimeout, 10*time.Second)
	setDuration(&c.CloseGrace, time.Second)
	setDuration(&c.ShutdownSpread, time.Second)
	setDuration(&c.ReplayTimeout, 15*time.Second)
	setDuration(&c.ReplaySkew, 5*time.Second)
	setDuration(&c.streamCheckInterval, time.Second)
	if c.MaxSocketBufferBytes == 0 {
		c.MaxSocketBufferBytes = 1 << 20
	}
	if c.SendBufferBytes == 0 {
		c.SendBufferBytes = 64 << 10
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = 64 << 10
	}
	if c.RingBytes == 0 {
		c.RingBytes = 64 << 20
	}
	if c.RingPerChannel == 0 {
		c.RingPerChannel = 1000
	}
	if c.WarmEvents == 0 {
		c.WarmEvents = 100_000
	}
	if c.ReplayConcurrency == 0 {
		c.ReplayConcurrency = 32
	}
	if c.PublishClaim == "" {
		c.PublishClaim = "publish"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// supportedAlgorithms are the JWT algorithms the gateway can verify.
var supportedAlgorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// validate names the first invalid field. It expects defaults applied.
func (c *Config) validate() error {
	for _, alg := range c.JWTAlgorithms {
		if strings.EqualFold(alg, "none") {
			return errors.New(`jwtAlgorithms: "none" is never accepted`)
		}
		if !slices.Contains(supportedAlgorithms, alg) {
			return fmt.Errorf("jwtAlgorithms: unsupported algorithm %q (supported: %s)", alg, strings.Join(supportedAlgorithms, ", "))
		}
	}
	if _, err := newAuthenticator(c); err != nil {
		return err
	}
	switch {
	case c.PingInterval < time.Millisecond:
		return fmt.Errorf("pingSocketsIntervalMs: %s is too short", c.PingInterval)
	case c.PongTimeout < c.PingInterval:
		return fmt.Errorf("socketResponseTimeoutMs: %s is shorter than the ping interval %s", c.PongTimeout, c.PingInterval)
	case c.MaxTotalConnections < 0:
		return errors.New("maxTotalConnections: must not be negative")
	case c.MaxConnectionsPerChannel < 0:
		return errors.New("maxConnectionsPerChannel: must not be negative")
	case c.MaxSocketBufferBytes < 1024:
		return fmt.Errorf("maxSocketBufferBytes: %d is below 1024", c.MaxSocketBufferBytes)
	case c.ReadLimit < 125:
		return fmt.Errorf("readLimit: %d is below 125, the largest control frame", c.ReadLimit)
	case c.RingBytes < 0:
		return errors.New("replay.ringBytes: must not be negative")
	case c.RingPerChannel < 1:
		return errors.New("replay.ringPerChannel: must be positive")
	case c.ReplayConcurrency < 1:
		return errors.New("replay.concurrency: must be positive")
	}
	return nil
}
