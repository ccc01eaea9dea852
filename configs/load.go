package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration in JSON: a string such as "5s" or "24h", or a
// number of milliseconds (the unit of superset-websocket's *Ms keys).
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("duration must be a string like \"5s\" or milliseconds: %w", err)
	}
	*d = Duration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Source says where a configuration came from, for the start-up log.
type Source struct {
	// File is the file read, or "" when none was.
	File string
	// Env lists the environment variables applied.
	Env []string
	// Warnings are problems that did not stop loading (unknown keys, a
	// missing default file, settings pushbridge accepts but ignores).
	Warnings []string
}

// DefaultFile is read when no file is named and it exists, as
// superset-websocket reads config.json beside its package.
const DefaultFile = "config.json"

// Load builds the configuration: defaults, then the file at path (when
// path is empty, DefaultFile if it exists), then the environment as seen
// through lookupEnv, then validation.
func Load(path string, lookupEnv func(string) (string, bool)) (Config, Source, error) {
	return LoadWith(path, lookupEnv, LoadOptions{})
}

// LoadOptions tune LoadWith.
type LoadOptions struct {
	// SecretOptional skips the jwtSecret check, for commands that neither
	// verify nor sign tokens (publishing straight to NATS). Everything else
	// is validated as by Load.
	SecretOptional bool
}

// LoadWith is Load with options.
func LoadWith(path string, lookupEnv func(string) (string, bool), opts LoadOptions) (Config, Source, error) {
	cfg := Default()
	var src Source
	explicit := path != ""
	if !explicit {
		path = DefaultFile
		if v, ok := lookupEnv("NODE_ENV"); ok && v == "test" {
			path = "config.test.json"
		}
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		src.Warnings = append(src.Warnings, fmt.Sprintf("no %s found; using defaults and the environment", path))
	case err != nil:
		return cfg, src, fmt.Errorf("read config file: %w", err)
	default:
		if err := decodeFile(&cfg, data, &src); err != nil {
			return cfg, src, fmt.Errorf("config file %s: %w", path, err)
		}
		src.File = path
	}
	if err := applyEnv(&cfg, lookupEnv, &src); err != nil {
		return cfg, src, err
	}
	if err := cfg.validate(!opts.SecretOptional); err != nil {
		return cfg, src, err
	}
	src.Warnings = append(src.Warnings, cfg.ignoredSettings()...)
	return cfg, src, nil
}

// decodeFile merges a JSON file into cfg: objects merge key by key into
// the defaults (as superset-websocket's late version merges), arrays and
// scalars replace them. Keys starting with "//" are comments. Errors name
// the key path; unknown keys become warnings.
func decodeFile(cfg *Config, data []byte, src *Source) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if _, ok := top["redis"]; ok {
		cfg.Redis = defaultRedis()
	}
	return decodeObject(reflect.ValueOf(cfg).Elem(), top, "", src)
}

var durationType = reflect.TypeOf(Duration(0))

// decodeObject decodes the members of one JSON object into the struct v.
func decodeObject(v reflect.Value, members map[string]json.RawMessage, path string, src *Source) error {
	fields := fieldsByJSONName(v.Type())
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, "//") {
			continue
		}
		key := k
		if path != "" {
			key = path + "." + k
		}
		i, ok := fields[k]
		if !ok {
			src.Warnings = append(src.Warnings, fmt.Sprintf("unknown key %q ignored", key))
			continue
		}
		if err := decodeValue(v.Field(i), members[k], key, src); err != nil {
			return err
		}
	}
	return nil
}

func decodeValue(f reflect.Value, raw json.RawMessage, key string, src *Source) error {
	t := f.Type()
	isStruct := t.Kind() == reflect.Struct && t != durationType
	isStructPtr := t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct
	if (isStruct || isStructPtr) && len(raw) > 0 && raw[0] == '{' {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if isStructPtr {
			if f.IsNil() {
				f.Set(reflect.New(t.Elem()))
			}
			f = f.Elem()
		}
		return decodeObject(f, members, key, src)
	}
	if err := json.Unmarshal(raw, f.Addr().Interface()); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("%s: expected %s, got JSON %s", key, typeErr.Type, typeErr.Value)
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func fieldsByJSONName(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = i
		}
	}
	return out
}

// envVar maps one environment variable onto the configuration.
type envVar struct {
	name string
	set  func(c *Config, v string) error
}

func envString(p func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func envInt(p func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*p(c) = n
		return nil
	}
}

func envInt64(p func(c *Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*p(c) = n
		return nil
	}
}

func envBool(p func(c *Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		// superset-websocket: REDIS_SSL is on when it is "true".
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not a boolean: %q", v)
		}
		*p(c) = b
		return nil
	}
}

func envList(p func(c *Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*p(c) = out
		return nil
	}
}

func envDuration(p func(c *Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		return p(c).UnmarshalJSON([]byte(strconv.Quote(strings.TrimSpace(v))))
	}
}

// redis returns the redis block, creating it with defaults: a REDIS_*
// variable means Redis is configured.
func redis(c *Config) *Redis {
	if c.Redis == nil {
		c.Redis = defaultRedis()
	}
	return c.Redis
}

// envVars lists every environment variable: superset-websocket's, then
// pushbridge's (PUSHBRIDGE_*).
var envVars = []envVar{
	{"PORT", envInt(func(c *Config) *int { return &c.Port })},
	{"LOG_LEVEL", envString(func(c *Config) *string { return &c.LogLevel })},
	{"LOG_TO_FILE", envBool(func(c *Config) *bool { return &c.LogToFile })},
	{"LOG_FILENAME", envString(func(c *Config) *string { return &c.LogFilename })},
	{"STATSD_HOST", envString(func(c *Config) *string { return &c.Statsd.Host })},
	{"STATSD_PORT", envInt(func(c *Config) *int { return &c.Statsd.Port })},
	{"STATSD_GLOBAL_TAGS", envList(func(c *Config) *[]string { return &c.Statsd.GlobalTags })},
	{"REDIS_HOST", envString(func(c *Config) *string { return &redis(c).Host })},
	{"REDIS_PORT", envInt(func(c *Config) *int { return &redis(c).Port })},
	{"REDIS_DB", envInt(func(c *Config) *int { return &redis(c).DB })},
	{"REDIS_USERNAME", envString(func(c *Config) *string { return &redis(c).Username })},
	{"REDIS_PASSWORD", envString(func(c *Config) *string { return &redis(c).Password })},
	{"REDIS_SSL", envBool(func(c *Config) *bool { return &redis(c).SSL })},
	{"REDIS_STREAM_PREFIX", envString(func(c *Config) *string { return &c.RedisStreamPrefix })},
	{"REDIS_STREAM_READ_COUNT", envInt(func(c *Config) *int { return &c.RedisStreamReadCount })},
	{"REDIS_STREAM_READ_BLOCK_MS", envInt(func(c *Config) *int { return &c.RedisStreamReadBlockMs })},
	{"JWT_SECRET", envString(func(c *Config) *string { return &c.JWTSecret })},
	{"JWT_COOKIE_NAME", envString(func(c *Config) *string { return &c.JWTCookieName })},
	{"ALLOWED_ORIGINS", envList(func(c *Config) *[]string { return &c.AllowedOrigins })},
	{"SOCKET_RESPONSE_TIMEOUT_MS", envInt(func(c *Config) *int { return &c.SocketResponseTimeoutMs })},
	{"PING_SOCKETS_INTERVAL_MS", envInt(func(c *Config) *int { return &c.PingSocketsIntervalMs })},
	{"GC_CHANNELS_INTERVAL_MS", envInt(func(c *Config) *int { return &c.GCChannelsIntervalMs })},
	{"MAX_SOCKET_BUFFER_BYTES", envInt(func(c *Config) *int { return &c.MaxSocketBufferBytes })},
	{"EVENT_YIELD_BATCH_SIZE", envInt(func(c *Config) *int { return &c.EventYieldBatchSize })},
	{"MAX_CONNECTIONS_PER_CHANNEL", envInt(func(c *Config) *int { return &c.MaxConnectionsPerChannel })},
	{"MAX_TOTAL_CONNECTIONS", envInt(func(c *Config) *int { return &c.MaxTotalConnections })},

	{"PUSHBRIDGE_HOST", envString(func(c *Config) *string { return &c.Host })},
	{"PUSHBRIDGE_LOG_FORMAT", envString(func(c *Config) *string { return &c.LogFormat })},
	{"PUSHBRIDGE_METRICS_LISTEN", envString(func(c *Config) *string { return &c.MetricsListen })},
	{"PUSHBRIDGE_DEBUG_LISTEN", envString(func(c *Config) *string { return &c.DebugListen })},
	{"PUSHBRIDGE_NATS_URL", envString(func(c *Config) *string { return &c.NATS.URL })},
	{"PUSHBRIDGE_NATS_CREDS", envString(func(c *Config) *string { return &c.NATS.CredsFile })},
	{"PUSHBRIDGE_NATS_USER", envString(func(c *Config) *string { return &c.NATS.User })},
	{"PUSHBRIDGE_NATS_PASSWORD", envString(func(c *Config) *string { return &c.NATS.Password })},
	{"PUSHBRIDGE_NATS_TOKEN", envString(func(c *Config) *string { return &c.NATS.Token })},
	{"PUSHBRIDGE_NATS_DOMAIN", envString(func(c *Config) *string { return &c.NATS.Domain })},
	{"PUSHBRIDGE_NATS_STORE_DIR", envString(func(c *Config) *string { return &c.NATS.StoreDir })},
	{"PUSHBRIDGE_NATS_SERVER_NAME", envString(func(c *Config) *string { return &c.NATS.Embedded.ServerName })},
	{"PUSHBRIDGE_NATS_LISTEN", envString(func(c *Config) *string { return &c.NATS.Embedded.Listen })},
	{"PUSHBRIDGE_NATS_CLUSTER_NAME", envString(func(c *Config) *string { return &c.NATS.Embedded.Cluster.Name })},
	{"PUSHBRIDGE_NATS_CLUSTER_LISTEN", envString(func(c *Config) *string { return &c.NATS.Embedded.Cluster.Listen })},
	{"PUSHBRIDGE_NATS_CLUSTER_ADVERTISE", envString(func(c *Config) *string { return &c.NATS.Embedded.Cluster.Advertise })},
	{"PUSHBRIDGE_NATS_ROUTES", envList(func(c *Config) *[]string { return &c.NATS.Embedded.Cluster.Routes })},
	// Secrets of the embedded server's listeners, so that config files
	// shared by every node (and checked in) hold none.
	{"PUSHBRIDGE_NATS_EMBEDDED_USER", envString(func(c *Config) *string { return &c.NATS.Embedded.User })},
	{"PUSHBRIDGE_NATS_EMBEDDED_PASSWORD", envString(func(c *Config) *string { return &c.NATS.Embedded.Password })},
	{"PUSHBRIDGE_NATS_EMBEDDED_TOKEN", envString(func(c *Config) *string { return &c.NATS.Embedded.Token })},
	{"PUSHBRIDGE_NATS_CLUSTER_USER", envString(func(c *Config) *string { return &c.NATS.Embedded.Cluster.User })},
	{"PUSHBRIDGE_NATS_CLUSTER_PASSWORD", envString(func(c *Config) *string { return &c.NATS.Embedded.Cluster.Password })},
	// Per-node: each edge (leaf node) runs its own JetStream domain.
	{"PUSHBRIDGE_NATS_EMBEDDED_DOMAIN", envString(func(c *Config) *string { return &c.NATS.Embedded.Domain })},
	// One leaf remote: the hub's leaf URLs, comma-separated (as one entry
	// of nats.embedded.leafNode.remotes), credentials in the URLs.
	{"PUSHBRIDGE_NATS_LEAF_REMOTE", func(c *Config, v string) error {
		c.NATS.Embedded.LeafNode.Remotes = []string{strings.TrimSpace(v)}
		return nil
	}},
	{"PUSHBRIDGE_STREAM_NAME", envString(func(c *Config) *string { return &c.Stream.Name })},
	{"PUSHBRIDGE_STREAM_SUBJECT_PREFIX", envString(func(c *Config) *string { return &c.Stream.SubjectPrefix })},
	{"PUSHBRIDGE_STREAM_REPLICAS", envInt(func(c *Config) *int { return &c.Stream.Replicas })},
	{"PUSHBRIDGE_STREAM_MAX_MSGS_PER_CHANNEL", envInt64(func(c *Config) *int64 { return &c.Stream.MaxMsgsPerChannel })},
	{"PUSHBRIDGE_STREAM_MAX_MSGS", envInt64(func(c *Config) *int64 { return &c.Stream.MaxMsgs })},
	{"PUSHBRIDGE_STREAM_MAX_AGE", envDuration(func(c *Config) *Duration { return &c.Stream.MaxAge })},
	{"PUSHBRIDGE_REDIS_URL", envString(func(c *Config) *string { return &redis(c).URL })},
	{"PUSHBRIDGE_REDIS_CA_FILE", envString(func(c *Config) *string { return &redis(c).CAFile })},
	{"PUSHBRIDGE_REDIS_SENTINEL_ADDRS", envList(func(c *Config) *[]string { return &redis(c).SentinelAddrs })},
	{"PUSHBRIDGE_REDIS_SENTINEL_MASTER", envString(func(c *Config) *string { return &redis(c).SentinelMaster })},
	{"PUSHBRIDGE_INGEST_START", envString(func(c *Config) *string { return &c.Ingest.Start })},
	{"PUSHBRIDGE_INGEST_ENABLED", func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not a boolean: %q", v)
		}
		c.Ingest.Enabled = &b
		return nil
	}},
}

// EnvVarNames lists the environment variables Load reads.
func EnvVarNames() []string {
	out := make([]string, len(envVars))
	for i, e := range envVars {
		out[i] = e.name
	}
	return out
}

// applyEnv applies non-blank variables, as superset-websocket does.
func applyEnv(cfg *Config, lookupEnv func(string) (string, bool), src *Source) error {
	for _, e := range envVars {
		v, ok := lookupEnv(e.name)
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		if err := e.set(cfg, v); err != nil {
			return fmt.Errorf("environment variable %s: %w", e.name, err)
		}
		src.Env = append(src.Env, e.name)
	}
	return nil
}
