// Package configs loads pushbridge's configuration: superset-websocket's
// config.json keys and environment variables with their meaning unchanged,
// and pushbridge's own keys beside them. Loading goes defaults → file →
// environment (non-blank values only) → validation; an invalid value is
// reported with the key that holds it.
//
// The example files in this directory are documentation: superset.json
// for a drop-in replacement of superset-websocket, standalone.json for
// other publishers.
package configs

import (
	"time"
)

// Config is the whole configuration. JSON names are the config.json keys.
type Config struct {
	// Superset keys (superset-websocket src/config.ts).

	Port                     int      `json:"port"`
	LogLevel                 string   `json:"logLevel"`
	LogToFile                bool     `json:"logToFile"`
	LogFilename              string   `json:"logFilename"`
	Statsd                   Statsd   `json:"statsd"`
	Redis                    *Redis   `json:"redis,omitempty"`
	RedisStreamPrefix        string   `json:"redisStreamPrefix"`
	RedisStreamReadCount     int      `json:"redisStreamReadCount"`
	RedisStreamReadBlockMs   int      `json:"redisStreamReadBlockMs"`
	JWTAlgorithms            []string `json:"jwtAlgorithms"`
	JWTSecret                string   `json:"jwtSecret"`
	JWTCookieName            string   `json:"jwtCookieName"`
	JWTChannelIDKey          string   `json:"jwtChannelIdKey"`
	AllowedOrigins           []string `json:"allowedOrigins"`
	SocketResponseTimeoutMs  int      `json:"socketResponseTimeoutMs"`
	PingSocketsIntervalMs    int      `json:"pingSocketsIntervalMs"`
	GCChannelsIntervalMs     int      `json:"gcChannelsIntervalMs"`
	MaxSocketBufferBytes     int      `json:"maxSocketBufferBytes"`
	EventYieldBatchSize      int      `json:"eventYieldBatchSize"`
	MaxConnectionsPerChannel int      `json:"maxConnectionsPerChannel"`
	MaxTotalConnections      int      `json:"maxTotalConnections"`

	// pushbridge keys.

	// Host is the listen address's host; empty listens on all interfaces,
	// as superset-websocket does.
	Host string `json:"host"`
	// LogFormat is "text" (default) or "json".
	LogFormat string `json:"logFormat"`
	// ShutdownTimeout bounds a graceful shutdown. Default 30s.
	ShutdownTimeout Duration `json:"shutdownTimeout"`
	// MetricsListen serves /metrics on a separate listener as well
	// (host:port); the main port always serves it.
	MetricsListen string `json:"metricsListen"`
	// DebugListen serves pprof on host:port when set (loopback advised).
	DebugListen string `json:"debugListen"`

	NATS    NATS    `json:"nats"`
	Stream  Stream  `json:"stream"`
	Replay  Replay  `json:"replay"`
	Publish Publish `json:"publish"`
	Ingest  Ingest  `json:"ingest"`
	Sockets Sockets `json:"sockets"`
}

// Statsd is superset-websocket's statsd block.
type Statsd struct {
	Host       string   `json:"host"`
	Port       int      `json:"port"`
	GlobalTags []string `json:"globalTags"`
	// Disabled turns statsd off (pushbridge key). superset-websocket
	// always sends; so does pushbridge by default.
	Disabled bool `json:"disabled"`
}

// Redis is superset-websocket's redis block plus what Superset's Flask side
// supports and the Node server never did: a URL, a CA file, Sentinel.
type Redis struct {
	Host             string `json:"host"`
	Port             int    `json:"port"`
	DB               int    `json:"db"`
	Username         string `json:"username"`
	Password         string `json:"password"`
	SSL              bool   `json:"ssl"`
	ValidateHostname *bool  `json:"validateHostname,omitempty"`
	// URL (redis:// or rediss://) overrides host, port, db and credentials.
	URL string `json:"url"`
	// CAFile verifies the server's certificate with these CAs instead of
	// the system pool.
	CAFile string `json:"caFile"`
	// SentinelAddrs (host:port) and SentinelMaster switch to Sentinel.
	SentinelAddrs    []string `json:"sentinelAddrs"`
	SentinelMaster   string   `json:"sentinelMaster"`
	SentinelUsername string   `json:"sentinelUsername"`
	SentinelPassword string   `json:"sentinelPassword"`
}

// NATS is where the event log lives: the embedded server (default) or an
// external server or cluster (URL set).
type NATS struct {
	// URL of an external NATS server or cluster, comma-separated. Empty:
	// run the embedded server.
	URL       string `json:"url"`
	CredsFile string `json:"credsFile"`
	NKeyFile  string `json:"nkeyFile"`
	User      string `json:"user"`
	Password  string `json:"password"`
	Token     string `json:"token"`
	TLS       TLS    `json:"tls"`
	// Domain is the JetStream domain to address (leaf node setups).
	Domain string `json:"domain"`

	Embedded Embedded `json:"embedded"`
	// StoreDir is the embedded server's store. Default "data".
	StoreDir string `json:"storeDir"`
}

// TLS holds client TLS files.
type TLS struct {
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Embedded configures the embedded NATS server beyond its store.
type Embedded struct {
	ServerName string `json:"serverName"`
	// Listen opens a NATS client listener (host:port); needed for a
	// cluster and for external publishers.
	Listen   string   `json:"listen"`
	User     string   `json:"user"`
	Password string   `json:"password"`
	Token    string   `json:"token"`
	Domain   string   `json:"domain"`
	Tags     []string `json:"tags"`
	Cluster  struct {
		Name      string   `json:"name"`
		Listen    string   `json:"listen"`
		Advertise string   `json:"advertise"`
		Routes    []string `json:"routes"`
		User      string   `json:"user"`
		Password  string   `json:"password"`
	} `json:"cluster"`
	LeafNode struct {
		Listen  string   `json:"listen"`
		Remotes []string `json:"remotes"`
	} `json:"leafNode"`
	Gateway struct {
		Name    string              `json:"name"`
		Listen  string              `json:"listen"`
		Remotes map[string][]string `json:"remotes"`
	} `json:"gateway"`
	MaxMemory        int64    `json:"maxMemory"`
	MaxStore         int64    `json:"maxStore"`
	SyncAlways       bool     `json:"syncAlways"`
	LameDuckDuration Duration `json:"lameDuckDuration"`
}

// Stream is the event log stream.
type Stream struct {
	Name              string   `json:"name"`
	SubjectPrefix     string   `json:"subjectPrefix"`
	Replicas          int      `json:"replicas"`
	Storage           string   `json:"storage"`
	MaxMsgsPerChannel int64    `json:"maxMsgsPerChannel"`
	MaxMsgs           int64    `json:"maxMsgs"`
	MaxBytes          int64    `json:"maxBytes"`
	MaxAge            Duration `json:"maxAge"`
	MaxMsgSize        int32    `json:"maxMsgSize"`
	DuplicateWindow   Duration `json:"duplicateWindow"`
	MaxConsumers      int      `json:"maxConsumers"`
	PlacementCluster  string   `json:"placementCluster"`
	PlacementTags     []string `json:"placementTags"`
	// Mirror makes this node read a local mirror of the stream (another
	// region); publishes still go to the origin.
	Mirror *StreamMirror `json:"mirror,omitempty"`
}

// StreamMirror configures a regional mirror of the event log.
type StreamMirror struct {
	// Name of the local mirror stream (unique in a super-cluster).
	Name string `json:"name"`
	// OriginDomain is the origin's JetStream domain for leaf nodes.
	OriginDomain     string   `json:"originDomain"`
	PlacementCluster string   `json:"placementCluster"`
	PlacementTags    []string `json:"placementTags"`
}

// Replay tunes last_id replay.
type Replay struct {
	RingBytes      int64    `json:"ringBytes"`
	RingPerChannel int      `json:"ringPerChannel"`
	WarmEvents     uint64   `json:"warmEvents"`
	Concurrency    int      `json:"concurrency"`
	Timeout        Duration `json:"timeout"`
}

// Publish configures the HTTP publish API.
type Publish struct {
	Disabled        bool   `json:"disabled"`
	Claim           string `json:"claim"`
	MaxPayloadBytes int    `json:"maxPayloadBytes"`
}

// Sockets tunes WebSocket handling beyond the Superset keys.
type Sockets struct {
	SendBuffer     int      `json:"sendBuffer"`
	WriteTimeout   Duration `json:"writeTimeout"`
	ReadLimit      int      `json:"readLimit"`
	CloseGrace     Duration `json:"closeGrace"`
	ShutdownSpread Duration `json:"shutdownSpread"`
	DisableNetpoll bool     `json:"disableNetpoll"`
}

// Ingest configures the Redis Streams mirror.
type Ingest struct {
	// Enabled runs the mirror inside serve. Default: on when a redis
	// block (or a REDIS_* variable) is present.
	Enabled *bool `json:"enabled,omitempty"`
	// Start is where a mirror without a checkpoint begins: "new"
	// (default, superset-websocket's "$"), "all", or a Redis id.
	Start string `json:"start"`
	// DeadLetterSubject receives entries that cannot be mirrored.
	DeadLetterSubject string `json:"deadLetterSubject"`
	// Bucket is the NATS KV bucket for the checkpoint and the lease.
	Bucket string `json:"bucket"`
	// LeaseTTL is how long the active mirror's lease lasts unrenewed.
	LeaseTTL Duration `json:"leaseTTL"`
}

// Default returns the defaults: superset-websocket's for its keys.
func Default() Config {
	return Config{
		Port:                    8080,
		LogLevel:                "info",
		LogFilename:             "app.log",
		Statsd:                  Statsd{Host: "127.0.0.1", Port: 8125},
		RedisStreamPrefix:       "async-events-",
		RedisStreamReadCount:    100,
		RedisStreamReadBlockMs:  5000,
		JWTAlgorithms:           []string{"HS256"},
		JWTCookieName:           "async-token",
		JWTChannelIDKey:         "channel",
		SocketResponseTimeoutMs: 60_000,
		PingSocketsIntervalMs:   20_000,
		GCChannelsIntervalMs:    120_000,
		EventYieldBatchSize:     100,
		LogFormat:               "text",
		ShutdownTimeout:         Duration(30 * time.Second),
		NATS:                    NATS{StoreDir: "data"},
		Stream: Stream{
			Name:              "PUSHBRIDGE",
			SubjectPrefix:     "push",
			Storage:           "file",
			MaxMsgsPerChannel: 1000,
			MaxMsgs:           1_000_000,
			MaxBytes:          -1,
			MaxAge:            Duration(24 * time.Hour),
			MaxMsgSize:        256 << 10,
			DuplicateWindow:   Duration(10 * time.Minute),
			MaxConsumers:      10_000,
		},
		Publish: Publish{Claim: "publish"},
		Ingest:  Ingest{Start: "new", Bucket: "PUSHBRIDGE_INGEST", LeaseTTL: Duration(10 * time.Second)},
	}
}

// defaultRedis is superset-websocket's redis block default.
func defaultRedis() *Redis {
	return &Redis{Host: "127.0.0.1", Port: 6379, Username: "default"}
}
