package configs

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/bridge"
	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/ingest"
)

// SlogLevel maps superset-websocket's winston levels to slog levels.
func (c *Config) SlogLevel() (slog.Level, error) {
	switch strings.ToLower(c.LogLevel) {
	case "silly", "debug", "verbose":
		return slog.LevelDebug, nil
	case "info", "http", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q (use debug, info, warn or error)", c.LogLevel)
}

// ListenAddr is the gateway's listen address.
func (c *Config) ListenAddr() string { return fmt.Sprintf("%s:%d", c.Host, c.Port) }

// Bridge returns the gateway configuration.
func (c *Config) Bridge(log *slog.Logger, reg prometheus.Registerer, statsd bridge.StatsdClient) bridge.Config {
	return bridge.Config{
		JWTSecret:                c.JWTSecret,
		JWTAlgorithms:            c.JWTAlgorithms,
		JWTCookieName:            c.JWTCookieName,
		JWTChannelIDKey:          c.JWTChannelIDKey,
		AllowedOrigins:           c.AllowedOrigins,
		PingInterval:             time.Duration(c.PingSocketsIntervalMs) * time.Millisecond,
		PongTimeout:              time.Duration(c.SocketResponseTimeoutMs) * time.Millisecond,
		MaxTotalConnections:      c.MaxTotalConnections,
		MaxConnectionsPerChannel: c.MaxConnectionsPerChannel,
		MaxSocketBufferBytes:     c.MaxSocketBufferBytes,
		SendBufferBytes:          c.Sockets.SendBuffer,
		WriteTimeout:             c.Sockets.WriteTimeout.D(),
		ReadLimit:                c.Sockets.ReadLimit,
		CloseGrace:               c.Sockets.CloseGrace.D(),
		ShutdownSpread:           c.Sockets.ShutdownSpread.D(),
		DisableNetpoll:           c.Sockets.DisableNetpoll,
		RingBytes:                c.Replay.RingBytes,
		RingPerChannel:           c.Replay.RingPerChannel,
		WarmEvents:               c.Replay.WarmEvents,
		ReplayConcurrency:        c.Replay.Concurrency,
		ReplayTimeout:            c.Replay.Timeout.D(),
		DisablePublish:           c.Publish.Disabled,
		PublishClaim:             c.Publish.Claim,
		MaxPayloadBytes:          c.Publish.MaxPayloadBytes,
		Logger:                   log,
		Registerer:               reg,
		Statsd:                   statsd,
	}
}

func eventlogConfig(c *Config) eventlog.Config {
	s := c.Stream
	cfg := eventlog.Config{
		Stream:            s.Name,
		SubjectPrefix:     s.SubjectPrefix,
		Replicas:          s.Replicas,
		Memory:            s.Storage == "memory",
		MaxMsgsPerChannel: s.MaxMsgsPerChannel,
		MaxMsgs:           s.MaxMsgs,
		MaxBytes:          s.MaxBytes,
		MaxAge:            s.MaxAge.D(),
		MaxMsgSize:        s.MaxMsgSize,
		Duplicates:        s.DuplicateWindow.D(),
		MaxConsumers:      s.MaxConsumers,
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
		if c.NATS.Embedded.Cluster.Listen != "" {
			cfg.Replicas = 3
		}
	}
	if s.PlacementCluster != "" || len(s.PlacementTags) > 0 {
		cfg.Placement = &jetstream.Placement{Cluster: s.PlacementCluster, Tags: s.PlacementTags}
	}
	if m := s.Mirror; m != nil {
		cfg.Mirror = &eventlog.Mirror{Name: m.Name, OriginDomain: m.OriginDomain}
		if m.PlacementCluster != "" || len(m.PlacementTags) > 0 {
			cfg.Mirror.Placement = &jetstream.Placement{Cluster: m.PlacementCluster, Tags: m.PlacementTags}
		}
	}
	return cfg
}

// EventLog returns the event log configuration. Replicas default to 3 in
// an embedded cluster and 1 otherwise.
func (c *Config) EventLog(log *slog.Logger) eventlog.Config {
	cfg := eventlogConfig(c)
	cfg.Logger = log
	return cfg
}

// Embedded returns the embedded NATS server configuration.
func (c *Config) Embedded(log *slog.Logger) embedded.Config {
	e := c.NATS.Embedded
	return embedded.Config{
		Name:     e.ServerName,
		StoreDir: c.NATS.StoreDir,
		Listen:   e.Listen,
		Username: e.User,
		Password: e.Password,
		Token:    e.Token,
		Cluster: embedded.ClusterConfig{
			Name: e.Cluster.Name, Listen: e.Cluster.Listen, Advertise: e.Cluster.Advertise,
			Routes: e.Cluster.Routes, Username: e.Cluster.User, Password: e.Cluster.Password,
		},
		LeafNode:         embedded.LeafNodeConfig{Listen: e.LeafNode.Listen, Remotes: e.LeafNode.Remotes},
		Gateway:          embedded.GatewayConfig{Name: e.Gateway.Name, Listen: e.Gateway.Listen, Remotes: e.Gateway.Remotes},
		Domain:           e.Domain,
		Tags:             e.Tags,
		MaxMemory:        e.MaxMemory,
		MaxStore:         e.MaxStore,
		SyncAlways:       e.SyncAlways,
		LameDuckDuration: e.LameDuckDuration.D(),
		Logger:           log,
	}
}

// NATSOptions returns the client options for an external NATS server:
// credentials, TLS, and reconnecting forever (the gateway rides out broker
// failovers; the ordered consumer resumes where it was).
func (c *Config) NATSOptions(name string) ([]nats.Option, error) {
	n := c.NATS
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
	}
	switch {
	case n.CredsFile != "":
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	case n.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(n.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkeyFile: %w", err)
		}
		opts = append(opts, opt)
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token))
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	return opts, nil
}

// JetStreamDomain is the JetStream domain to address ("" for the local
// one); leaf node setups need it.
func (c *Config) JetStreamDomain() string { return c.NATS.Domain }

// IngestEnabled reports whether serve runs the Redis mirror: ingest.enabled
// when set, otherwise whenever Redis is configured (the drop-in case).
func (c *Config) IngestEnabled() bool {
	if c.Ingest.Enabled != nil {
		return *c.Ingest.Enabled
	}
	return c.Redis != nil
}

// IngestConfig returns the mirror's configuration.
func (c *Config) IngestConfig(log *slog.Logger, reg prometheus.Registerer) ingest.Config {
	return ingest.Config{
		Prefix:            c.RedisStreamPrefix,
		ReadCount:         c.RedisStreamReadCount,
		ReadBlock:         time.Duration(c.RedisStreamReadBlockMs) * time.Millisecond,
		Start:             c.Ingest.Start,
		DeadLetterSubject: c.Ingest.DeadLetterSubject,
		Bucket:            c.Ingest.Bucket,
		LeaseTTL:          c.Ingest.LeaseTTL.D(),
		Domain:            c.JetStreamDomain(),
		Logger:            log,
		Registerer:        reg,
	}
}

// RedisClientConfig returns how to reach Redis (defaults when no redis
// block is configured).
func (c *Config) RedisClientConfig() ingest.RedisConfig {
	r := c.Redis
	if r == nil {
		r = defaultRedis()
	}
	return ingest.RedisConfig{
		Addr:              net.JoinHostPort(r.Host, strconv.Itoa(r.Port)),
		DB:                r.DB,
		Username:          r.Username,
		Password:          r.Password,
		TLS:               r.SSL,
		SkipHostnameCheck: r.ValidateHostname != nil && !*r.ValidateHostname,
		CAFile:            r.CAFile,
		URL:               r.URL,
		SentinelAddrs:     r.SentinelAddrs,
		SentinelMaster:    r.SentinelMaster,
		SentinelUsername:  r.SentinelUsername,
		SentinelPassword:  r.SentinelPassword,
	}
}
