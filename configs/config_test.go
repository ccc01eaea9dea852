package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const secret = "0123456789abcdef0123456789abcdef-config"

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsMatchSupersetWebsocket(t *testing.T) {
	c, _, err := Load(writeFile(t, `{"jwtSecret":"`+secret+`"}`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.JWTCookieName != "async-token" || c.JWTChannelIDKey != "channel" || c.JWTAlgorithms[0] != "HS256" ||
		c.PingSocketsIntervalMs != 20000 || c.SocketResponseTimeoutMs != 60000 || c.RedisStreamPrefix != "async-events-" ||
		c.RedisStreamReadCount != 100 || c.RedisStreamReadBlockMs != 5000 || c.Statsd.Host != "127.0.0.1" || c.Statsd.Port != 8125 {
		t.Fatalf("defaults %+v", c)
	}
	if c.Redis != nil {
		t.Fatal("redis configured without a redis block")
	}
	b := c.Bridge(nil, nil, nil)
	if b.PingInterval != 20*time.Second || b.PongTimeout != time.Minute {
		t.Fatalf("bridge config %+v", b)
	}
	if el := c.EventLog(nil); el.MaxMsgsPerChannel != 1000 || el.MaxMsgs != 1_000_000 || el.MaxAge != 24*time.Hour || el.Replicas != 1 {
		t.Fatalf("event log config %+v", el)
	}
}

func TestFileThenEnv(t *testing.T) {
	p := writeFile(t, `{
		"port": 9000, "jwtSecret": "`+secret+`", "redis": {"host": "redis.internal", "password": "pw"},
		"allowedOrigins": ["https://a"], "stream": {"maxAge": "2h", "maxMsgsPerChannel": 50},
		"streamPrefix": "legacy-unused-key"
	}`)
	c, src, err := Load(p, env(map[string]string{
		"PORT": "9100", "REDIS_PORT": "6380", "ALLOWED_ORIGINS": " https://x , https://y ",
		"REDIS_HOST":                "   ", // blank: ignored, as superset-websocket does
		"PUSHBRIDGE_NATS_STORE_DIR": "/var/lib/pb", "PUSHBRIDGE_STREAM_MAX_AGE": "90m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9100 || c.Redis.Host != "redis.internal" || c.Redis.Port != 6380 || c.Redis.Password != "pw" ||
		c.Redis.Username != "default" || c.NATS.StoreDir != "/var/lib/pb" {
		t.Fatalf("merged %+v redis %+v", c, c.Redis)
	}
	if strings.Join(c.AllowedOrigins, ",") != "https://x,https://y" {
		t.Fatalf("origins %q", c.AllowedOrigins)
	}
	if c.Stream.MaxAge.D() != 90*time.Minute || c.Stream.MaxMsgsPerChannel != 50 || c.Stream.MaxMsgs != 1_000_000 {
		t.Fatalf("stream %+v", c.Stream)
	}
	if src.File != p || !strings.Contains(strings.Join(src.Env, ","), "REDIS_PORT") || strings.Contains(strings.Join(src.Env, ","), "REDIS_HOST") {
		t.Fatalf("source %+v", src)
	}
	if !strings.Contains(strings.Join(src.Warnings, "\n"), `unknown key "streamPrefix"`) {
		t.Fatalf("warnings %q", src.Warnings)
	}
}

func TestRedisEnvEnablesRedis(t *testing.T) {
	c, _, err := Load("", env(map[string]string{"JWT_SECRET": secret, "REDIS_HOST": "r"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis == nil || c.Redis.Host != "r" || c.Redis.Port != 6379 {
		t.Fatalf("redis %+v", c.Redis)
	}
}

func TestInvalidValuesNameTheirKey(t *testing.T) {
	for _, tc := range []struct {
		file string
		env  map[string]string
		key  string
	}{
		{`{"jwtSecret":"short"}`, nil, "jwtSecret"},
		{`{}`, nil, "jwtSecret"},
		{`{"jwtSecret":"` + secret + `","jwtAlgorithms":["none"]}`, nil, "jwtAlgorithms"},
		{`{"jwtSecret":"` + secret + `","port":70000}`, nil, "port"},
		{`{"jwtSecret":"` + secret + `","port":"8080"}`, nil, "port"},
		{`{"jwtSecret":"` + secret + `","logLevel":"loud"}`, nil, "logLevel"},
		{`{"jwtSecret":"` + secret + `","pingSocketsIntervalMs":0}`, nil, "pingSocketsIntervalMs"},
		{`{"jwtSecret":"` + secret + `","stream":{"maxAge":"forever"}}`, nil, "maxAge"},
		{`{"jwtSecret":"` + secret + `","stream":{"storage":"tape"}}`, nil, "stream.storage"},
		{`{"jwtSecret":"` + secret + `","redis":{"url":"http://x"}}`, nil, "redis.url"},
		{`{"jwtSecret":"` + secret + `","redis":{"sentinelAddrs":["a:1"]}}`, nil, "redis.sentinelMaster"},
		{`{"jwtSecret":"` + secret + `","nats":{"url":"nats://x","embedded":{"listen":"127.0.0.1:4222"}}}`, nil, "nats.url"},
		{`{"jwtSecret":"` + secret + `","nats":{"embedded":{"listen":"127.0.0.1:1","cluster":{"listen":"127.0.0.1:2"}}}}`, nil, "nats.embedded.cluster.name"},
		{`{"jwtSecret":"` + secret + `","nats":{"embedded":{"user":"app"}}}`, nil, "nats.embedded.password"},
		{`{"jwtSecret":"` + secret + `","nats":{"embedded":{"cluster":{"user":"route"}}}}`, nil, "nats.embedded.cluster.password"},
		{`{"jwtSecret":"` + secret + `","ingest":{"start":"yesterday"}}`, nil, "ingest.start"},
		{`{"jwtSecret":"` + secret + `"}`, map[string]string{"PORT": "eighty"}, "PORT"},
		{`not json`, nil, "not a JSON object"},
	} {
		_, _, err := Load(writeFile(t, tc.file), env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s %v: error %v does not name %q", tc.file, tc.env, err, tc.key)
		}
	}
}

func TestMissingFiles(t *testing.T) {
	if _, _, err := Load(filepath.Join(t.TempDir(), "none.json"), env(map[string]string{"JWT_SECRET": secret})); err == nil {
		t.Fatal("an explicitly named missing file was accepted")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	_, src, err := Load("", env(map[string]string{"JWT_SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	if src.File != "" || !strings.Contains(strings.Join(src.Warnings, ""), "no config.json") {
		t.Fatalf("source %+v", src)
	}
}

func TestEnvVarNamesCoverSuperset(t *testing.T) {
	names := strings.Join(EnvVarNames(), " ")
	for _, v := range []string{"PORT", "LOG_LEVEL", "LOG_TO_FILE", "LOG_FILENAME", "STATSD_HOST", "STATSD_PORT", "STATSD_GLOBAL_TAGS",
		"REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "REDIS_USERNAME", "REDIS_SSL", "REDIS_STREAM_PREFIX",
		"REDIS_STREAM_READ_COUNT", "REDIS_STREAM_READ_BLOCK_MS", "JWT_SECRET", "JWT_COOKIE_NAME", "ALLOWED_ORIGINS",
		"SOCKET_RESPONSE_TIMEOUT_MS", "PING_SOCKETS_INTERVAL_MS", "GC_CHANNELS_INTERVAL_MS", "MAX_SOCKET_BUFFER_BYTES",
		"EVENT_YIELD_BATCH_SIZE", "MAX_CONNECTIONS_PER_CHANNEL", "MAX_TOTAL_CONNECTIONS", "PUSHBRIDGE_NATS_URL", "PUSHBRIDGE_NATS_STORE_DIR"} {
		if !strings.Contains(" "+names+" ", " "+v+" ") {
			t.Errorf("%s is not read", v)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(`{"jwtSecret":"` + secret + `","stream":{"maxAge":"1h"}}`)
	f.Add(`{"redis":{"port":-1}}`)
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.json")
		_ = os.WriteFile(p, []byte(body), 0o600)
		c, _, err := Load(p, env(nil))
		if err == nil && len(c.JWTSecret) < MinSecretLength {
			t.Fatalf("accepted a short secret from %q", body)
		}
	})
}

// TestLoadSecretOptional: commands that neither sign nor verify tokens load
// the configuration without a JWT secret; everything else is validated.
func TestLoadSecretOptional(t *testing.T) {
	path := writeFile(t, `{"stream": {"subjectPrefix": "events"}}`)
	if _, _, err := Load(path, env(nil)); err == nil || !strings.Contains(err.Error(), "jwtSecret") {
		t.Fatalf("Load without a secret: %v, want a jwtSecret error", err)
	}
	c, _, err := LoadWith(path, env(nil), LoadOptions{SecretOptional: true})
	if err != nil || c.Stream.SubjectPrefix != "events" {
		t.Fatalf("LoadWith SecretOptional: %v, prefix %q", err, c.Stream.SubjectPrefix)
	}
	if _, _, err := LoadWith(path, env(map[string]string{"PORT": "99999"}), LoadOptions{SecretOptional: true}); err == nil || !strings.Contains(err.Error(), "port") {
		t.Fatalf("LoadWith SecretOptional with a bad port: %v, want a port error", err)
	}
}
