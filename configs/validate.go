package configs

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// MinSecretLength is Superset's minimum for GLOBAL_ASYNC_QUERIES_JWT_SECRET;
// superset-websocket exits when jwtSecret is shorter.
const MinSecretLength = 32

// Validate reports the first invalid value, naming its key.
func (c *Config) Validate() error { return c.validate(true) }

// validate is Validate; without requireSecret, jwtSecret is not checked.
func (c *Config) validate(requireSecret bool) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("port", "%d is not a TCP port", c.Port)
	}
	if _, err := c.SlogLevel(); err != nil {
		bad("logLevel", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("logFormat", "%q is neither \"text\" nor \"json\"", c.LogFormat)
	}
	hmac := false
	for _, alg := range c.JWTAlgorithms {
		if strings.EqualFold(alg, "none") {
			bad("jwtAlgorithms", "\"none\" is never accepted")
		}
		if strings.HasPrefix(alg, "HS") {
			hmac = true
		}
	}
	if len(c.JWTAlgorithms) == 0 {
		bad("jwtAlgorithms", "empty; use [\"HS256\"] as Superset does")
	}
	if requireSecret && hmac && len(c.JWTSecret) < MinSecretLength {
		bad("jwtSecret", "%d characters; Superset and pushbridge require at least %d (set JWT_SECRET to Superset's GLOBAL_ASYNC_QUERIES_JWT_SECRET)", len(c.JWTSecret), MinSecretLength)
	}
	if c.JWTCookieName == "" {
		bad("jwtCookieName", "empty")
	}
	if c.JWTChannelIDKey == "" {
		bad("jwtChannelIdKey", "empty")
	}
	if c.PingSocketsIntervalMs <= 0 {
		bad("pingSocketsIntervalMs", "%d must be positive", c.PingSocketsIntervalMs)
	}
	if c.SocketResponseTimeoutMs <= 0 {
		bad("socketResponseTimeoutMs", "%d must be positive", c.SocketResponseTimeoutMs)
	}
	if c.SocketResponseTimeoutMs > 0 && c.PingSocketsIntervalMs > c.SocketResponseTimeoutMs {
		bad("socketResponseTimeoutMs", "%d is shorter than pingSocketsIntervalMs %d", c.SocketResponseTimeoutMs, c.PingSocketsIntervalMs)
	}
	if c.MaxSocketBufferBytes < 0 {
		bad("maxSocketBufferBytes", "%d must not be negative", c.MaxSocketBufferBytes)
	} else if c.MaxSocketBufferBytes > 0 && c.MaxSocketBufferBytes < 1024 {
		bad("maxSocketBufferBytes", "%d is below 1024 bytes", c.MaxSocketBufferBytes)
	}
	if c.MaxConnectionsPerChannel < 0 {
		bad("maxConnectionsPerChannel", "%d must not be negative", c.MaxConnectionsPerChannel)
	}
	if c.MaxTotalConnections < 0 {
		bad("maxTotalConnections", "%d must not be negative", c.MaxTotalConnections)
	}
	if c.RedisStreamReadCount <= 0 {
		bad("redisStreamReadCount", "%d must be positive", c.RedisStreamReadCount)
	}
	if c.RedisStreamReadBlockMs < 0 {
		bad("redisStreamReadBlockMs", "%d must not be negative", c.RedisStreamReadBlockMs)
	}
	if c.RedisStreamPrefix == "" {
		bad("redisStreamPrefix", "empty")
	}
	if c.Statsd.Port < 0 || c.Statsd.Port > 65535 {
		bad("statsd.port", "%d is not a UDP port", c.Statsd.Port)
	}
	c.validateRedis(bad)
	c.validateNATS(bad)
	c.validateStream(bad)
	for key, addr := range map[string]string{"metricsListen": c.MetricsListen, "debugListen": c.DebugListen} {
		if addr != "" {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				bad(key, "%q is not host:port", addr)
			}
		}
	}
	if c.Replay.RingBytes < 0 || c.Replay.RingPerChannel < 0 || c.Replay.Concurrency < 0 {
		bad("replay", "limits must not be negative")
	}
	if c.Publish.MaxPayloadBytes < 0 || (c.Publish.MaxPayloadBytes > 0 && int64(c.Publish.MaxPayloadBytes) > int64(c.Stream.MaxMsgSize)) {
		bad("publish.maxPayloadBytes", "%d must be between 1 and stream.maxMsgSize (%d)", c.Publish.MaxPayloadBytes, c.Stream.MaxMsgSize)
	}
	switch s := c.Ingest.Start; {
	case s == "new" || s == "all" || s == "$" || s == "0":
	default:
		if _, _, err := eventlog.SplitID(s); err != nil {
			bad("ingest.start", "%q is not \"new\", \"all\" or a Redis stream id", s)
		}
	}
	if c.Ingest.LeaseTTL.D() < time.Second {
		bad("ingest.leaseTTL", "%s is shorter than 1s", c.Ingest.LeaseTTL.D())
	}
	return errors.Join(errs...)
}

func (c *Config) validateRedis(bad func(string, string, ...any)) {
	r := c.Redis
	if r == nil {
		return
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "redis://") && !strings.HasPrefix(r.URL, "rediss://") && !strings.HasPrefix(r.URL, "unix://") {
		bad("redis.url", "%q must start with redis://, rediss:// or unix://", r.URL)
	}
	if r.Port <= 0 || r.Port > 65535 {
		bad("redis.port", "%d is not a TCP port", r.Port)
	}
	if r.DB < 0 {
		bad("redis.db", "%d must not be negative", r.DB)
	}
	if len(r.SentinelAddrs) > 0 && r.SentinelMaster == "" {
		bad("redis.sentinelMaster", "required with redis.sentinelAddrs")
	}
	for _, a := range r.SentinelAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("redis.sentinelAddrs", "%q is not host:port", a)
		}
	}
}

func (c *Config) validateNATS(bad func(string, string, ...any)) {
	n := c.NATS
	e := n.Embedded
	if n.URL != "" && (e.Listen != "" || e.Cluster.Listen != "" || e.LeafNode.Listen != "" || len(e.LeafNode.Remotes) > 0) {
		bad("nats.url", "set together with nats.embedded settings; pick an external server or the embedded one")
	}
	if n.URL == "" && n.StoreDir == "" {
		bad("nats.storeDir", "empty")
	}
	if e.Cluster.Listen != "" {
		if e.Listen == "" {
			bad("nats.embedded.listen", "required when clustering: nats-server starts routes only with a client listener")
		}
		if e.Cluster.Name == "" {
			bad("nats.embedded.cluster.name", "required when clustering")
		}
		if e.ServerName == "" {
			bad("nats.embedded.serverName", "required when clustering: it must be unique and stable across restarts")
		}
		if len(e.Cluster.Routes) == 0 {
			bad("nats.embedded.cluster.routes", "required when clustering: list every member's route, this node's own included (also in a one-node cluster of a super-cluster)")
		}
	}
	if e.Gateway.Listen != "" {
		switch {
		case e.Gateway.Name == "":
			bad("nats.embedded.gateway.name", "required with nats.embedded.gateway.listen")
		case e.Cluster.Listen == "" || e.Gateway.Name != e.Cluster.Name:
			bad("nats.embedded.gateway.name", "%q must name this node's cluster (nats.embedded.cluster.name %q, with cluster.listen set): a super-cluster joins clusters",
				e.Gateway.Name, e.Cluster.Name)
		}
	}
	// A user without a password would let anyone in who knows the name.
	if e.User != "" && e.Password == "" {
		bad("nats.embedded.password", "required with nats.embedded.user (PUSHBRIDGE_NATS_EMBEDDED_PASSWORD)")
	}
	if e.Cluster.User != "" && e.Cluster.Password == "" {
		bad("nats.embedded.cluster.password", "required with nats.embedded.cluster.user (PUSHBRIDGE_NATS_CLUSTER_PASSWORD)")
	}
	for key, addr := range map[string]string{
		"nats.embedded.listen": e.Listen, "nats.embedded.cluster.listen": e.Cluster.Listen,
		"nats.embedded.leafNode.listen": e.LeafNode.Listen, "nats.embedded.gateway.listen": e.Gateway.Listen,
	} {
		if addr != "" {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				bad(key, "%q is not host:port", addr)
			}
		}
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls", "certFile and keyFile go together")
	}
}

func (c *Config) validateStream(bad func(string, string, ...any)) {
	s := c.Stream
	if err := eventlogConfig(c).Validate(); err != nil {
		bad("stream", "%v", err)
	}
	if s.Storage != "file" && s.Storage != "memory" {
		bad("stream.storage", "%q is neither \"file\" nor \"memory\"", s.Storage)
	}
	if s.DuplicateWindow.D() > s.MaxAge.D() {
		bad("stream.duplicateWindow", "%s is longer than stream.maxAge %s", s.DuplicateWindow.D(), s.MaxAge.D())
	}
	if s.MaxMsgSize <= 0 {
		bad("stream.maxMsgSize", "%d must be positive", s.MaxMsgSize)
	}
	if m := s.Mirror; m != nil {
		if m.Name == s.Name {
			bad("stream.mirror.name", "%q is the origin stream's name; the mirror needs its own (unique in the super-cluster)", m.Name)
		}
		if d := c.NATS.Embedded.Domain; c.NATS.URL == "" && m.OriginDomain != "" && m.OriginDomain == d {
			bad("stream.mirror.originDomain", "%q is this node's own JetStream domain (nats.embedded.domain); name the hub's", d)
		}
	}
}

// ignoredSettings lists Superset settings that pushbridge accepts but does
// not need, so operators are not surprised.
func (c *Config) ignoredSettings() []string {
	var out []string
	d := Default()
	if c.GCChannelsIntervalMs != d.GCChannelsIntervalMs {
		out = append(out, "gcChannelsIntervalMs is accepted but unused: pushbridge forgets closed sockets and empty channels at once")
	}
	if c.EventYieldBatchSize != d.EventYieldBatchSize {
		out = append(out, "eventYieldBatchSize is accepted but unused: pushbridge dispatches on its own goroutine")
	}
	if strings.HasPrefix(c.JWTSecret, "CHANGE-ME") || strings.HasPrefix(c.JWTSecret, "CHANGE_ME") {
		out = append(out, "jwtSecret still starts with CHANGE-ME: set it to Superset's GLOBAL_ASYNC_QUERIES_JWT_SECRET")
	}
	return out
}
