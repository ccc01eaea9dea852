package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config describes an embedded NATS server. The zero value is a single,
// in-process-only node with its store in ./data.
type Config struct {
	// Name is the server name. In a cluster it must be unique and stable
	// across restarts, because it is the node's raft identity. Default:
	// "pushbridge-" followed by the host name.
	Name string

	// StoreDir is the JetStream file store directory. Default: "data".
	StoreDir string

	// Listen is the host:port of the NATS client listener. Empty means no TCP
	// listener at all: only in-process connections. A cluster, a leaf node
	// hub or external publishers need it; bind it deliberately (an internal
	// interface) and protect it with Username/Password or Token.
	Listen string

	// Username and Password, or Token, protect the client listener.
	Username string
	Password string
	Token    string

	// Cluster, when Cluster.Listen is set, makes this node a member of a
	// JetStream cluster.
	Cluster ClusterConfig

	// LeafNode configures leaf node connections: a hub listens for leaf
	// nodes, an edge node dials remotes.
	LeafNode LeafNodeConfig

	// Gateway, when Gateway.Name and Gateway.Listen are set, joins this
	// cluster to a super-cluster. It needs Cluster, with the same name.
	Gateway GatewayConfig

	// Domain is the JetStream domain of this server. Leaf nodes that run
	// their own JetStream need a domain distinct from their hub's.
	Domain string

	// Tags are server tags, used for stream placement (for example
	// "region:eu").
	Tags []string

	// MaxMemory and MaxStore cap JetStream memory and file storage in bytes.
	// Zero lets nats-server choose (a share of RAM and disk).
	MaxMemory int64
	MaxStore  int64

	// SyncAlways makes the file store fsync every write, closing the default
	// two-minute window in which a power loss can lose acknowledged events.
	SyncAlways bool

	// LameDuckDuration spreads the closing of NATS clients over this long on
	// Shutdown. Default 5s.
	LameDuckDuration time.Duration
	// LameDuckGracePeriod is the wait before lame duck mode starts closing
	// clients. Default 1s.
	LameDuckGracePeriod time.Duration

	// ReadyTimeout bounds Start. Default 30s.
	ReadyTimeout time.Duration

	// Logger receives the server's log lines. Nil means slog.Default().
	Logger *slog.Logger
	// Debug enables nats-server debug logging.
	Debug bool
}

// ClusterConfig configures the cluster (route) listener.
type ClusterConfig struct {
	// Name is the cluster name, identical on every node of the cluster.
	Name string
	// Listen is the host:port of the route listener. Empty: no cluster.
	Listen string
	// Advertise is the route address other nodes use, if not Listen.
	Advertise string
	// Routes are the route URLs of the cluster members, e.g.
	// "nats-route://10.0.0.1:6222". Including the node itself is harmless;
	// at least one is required, because nats-server runs clustered
	// JetStream only with configured routes (a one-node cluster in a
	// super-cluster lists its own). A route without user info in its URL
	// authenticates with Username and Password.
	Routes []string
	// Username and Password protect the route listener, and are what this
	// node presents to the routes it dials.
	Username string
	Password string
}

// LeafNodeConfig configures leaf node connections.
type LeafNodeConfig struct {
	// Listen is the host:port on which this server accepts leaf nodes.
	Listen string
	// Remotes are URLs of hubs this server connects to as a leaf node.
	Remotes []string
}

// GatewayConfig configures super-cluster gateway connections.
type GatewayConfig struct {
	// Name is this cluster's gateway name (the cluster name).
	Name string
	// Listen is the host:port of the gateway listener.
	Listen string
	// Remotes maps other clusters' names to their gateway URLs.
	Remotes map[string][]string
}

// Server is an embedded NATS server. Create it with New.
type Server struct {
	cfg  Config
	log  *slog.Logger
	opts *server.Options

	mu       sync.Mutex
	ns       *server.Server
	started  bool
	shutdown bool
}

// Compile-time guard: the gateway connects through nats.InProcessServer(s).
var _ nats.InProcessConnProvider = (*Server)(nil)

// ErrNotStarted is returned by methods that need a running server.
var ErrNotStarted = errors.New("embedded: server not started")

// New validates cfg and prepares a server. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "local"
		}
		cfg.Name = "pushbridge-" + host
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = "data"
	}
	if cfg.LameDuckDuration <= 0 {
		cfg.LameDuckDuration = 5 * time.Second
	}
	if cfg.LameDuckGracePeriod <= 0 {
		cfg.LameDuckGracePeriod = time.Second
	}
	if cfg.LameDuckGracePeriod >= cfg.LameDuckDuration {
		return nil, fmt.Errorf("embedded: lame duck grace period %s must be shorter than the duration %s", cfg.LameDuckGracePeriod, cfg.LameDuckDuration)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	opts, err := cfg.serverOptions()
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: cfg.Logger, opts: opts}, nil
}

func (cfg Config) serverOptions() (*server.Options, error) {
	storeDir, err := filepath.Abs(cfg.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("embedded: store dir %q: %w", cfg.StoreDir, err)
	}
	opts := &server.Options{
		ServerName:          cfg.Name,
		JetStream:           true,
		StoreDir:            storeDir,
		JetStreamMaxMemory:  cfg.MaxMemory,
		JetStreamMaxStore:   cfg.MaxStore,
		JetStreamDomain:     cfg.Domain,
		Tags:                cfg.Tags,
		NoSigs:              true,
		LameDuckDuration:    cfg.LameDuckDuration,
		LameDuckGracePeriod: cfg.LameDuckGracePeriod,
		Username:            cfg.Username,
		Password:            cfg.Password,
		Authorization:       cfg.Token,
		Debug:               cfg.Debug,
		// The gateway has its own /health; no NATS monitoring port.
		HTTPPort: 0,
	}
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	if cfg.Listen == "" {
		if cfg.Cluster.Listen != "" || cfg.LeafNode.Listen != "" || cfg.Gateway.Listen != "" {
			// nats-server never starts routes without a client listener
			// (nats-server#5174): refuse rather than hang.
			return nil, errors.New("embedded: a cluster, leaf node hub or gateway needs a client listener (Listen)")
		}
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: client listen address: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.Cluster.Listen != "" {
		host, port, err := splitHostPort(cfg.Cluster.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: cluster listen address: %w", err)
		}
		if cfg.Cluster.Name == "" {
			return nil, errors.New("embedded: a cluster needs a name")
		}
		opts.Cluster = server.ClusterOpts{
			Name:      cfg.Cluster.Name,
			Host:      host,
			Port:      port,
			Advertise: cfg.Cluster.Advertise,
			Username:  cfg.Cluster.Username,
			Password:  cfg.Cluster.Password,
		}
		for _, r := range cfg.Cluster.Routes {
			for _, u := range server.RoutesFromStr(r) {
				// nats-server authenticates a configured route only with
				// the credentials in its URL (gossiped routes get the
				// cluster's own). Lend the cluster's credentials to
				// routes that carry none, so route lists hold no secret.
				if u.User == nil && cfg.Cluster.Username != "" {
					u.User = url.UserPassword(cfg.Cluster.Username, cfg.Cluster.Password)
				}
				opts.Routes = append(opts.Routes, u)
			}
		}
		if len(opts.Routes) == 0 {
			// nats-server then starts without JetStream ("JetStream
			// cluster requires configured routes") and Start would wait
			// for it until ReadyTimeout.
			return nil, errors.New("embedded: a cluster needs routes: list every member's route URL (this node's own included, even in a one-node cluster)")
		}
	}
	if cfg.LeafNode.Listen != "" {
		host, port, err := splitHostPort(cfg.LeafNode.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: leaf node listen address: %w", err)
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
	}
	for _, remote := range cfg.LeafNode.Remotes {
		urls := server.RoutesFromStr(remote)
		if len(urls) == 0 {
			return nil, fmt.Errorf("embedded: leaf node remote %q is not a URL", remote)
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: urls})
	}
	if cfg.Gateway.Listen != "" {
		host, port, err := splitHostPort(cfg.Gateway.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: gateway listen address: %w", err)
		}
		if cfg.Gateway.Name == "" {
			return nil, errors.New("embedded: a gateway needs a name")
		}
		if cfg.Cluster.Listen == "" || cfg.Cluster.Name != cfg.Gateway.Name {
			// A super-cluster joins JetStream clusters, and nats-server
			// names a cluster's gateway after the cluster.
			return nil, fmt.Errorf("embedded: gateway %q needs a cluster of the same name (Cluster.Name %q, Cluster.Listen %q)",
				cfg.Gateway.Name, cfg.Cluster.Name, cfg.Cluster.Listen)
		}
		opts.Gateway.Name, opts.Gateway.Host, opts.Gateway.Port = cfg.Gateway.Name, host, port
		for name, urls := range cfg.Gateway.Remotes {
			parsed := server.RoutesFromStr(strings.Join(urls, ","))
			opts.Gateway.Gateways = append(opts.Gateway.Gateways, &server.RemoteGatewayOpts{Name: name, URLs: parsed})
		}
	}
	return opts, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	if port == 0 {
		// nats-server treats 0 as "default port"; -1 is "any free port".
		port = -1
	}
	return host, port, nil
}

// Start starts the server and returns once it accepts connections and
// JetStream is enabled, or ctx (bounded by Config.ReadyTimeout) ends.
// Starting a started server is a no-op.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return errors.New("embedded: server was shut down")
	}
	if s.started {
		return nil
	}
	if err := os.MkdirAll(s.opts.StoreDir, 0o750); err != nil {
		return fmt.Errorf("embedded: create store dir: %w", err)
	}
	ns, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("embedded: configure nats-server: %w", err)
	}
	ns.SetLoggerV2(slogAdapter{log: s.log.With("component", "nats-server")}, s.cfg.Debug, false, false)
	go ns.Start()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	for !ns.ReadyForConnections(100 * time.Millisecond) {
		if ctx.Err() != nil {
			ns.Shutdown()
			return fmt.Errorf("embedded: nats-server not ready: %w", ctx.Err())
		}
	}
	for !ns.JetStreamEnabled() {
		select {
		case <-ctx.Done():
			ns.Shutdown()
			return fmt.Errorf("embedded: jetstream not enabled: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.ns = ns
	s.started = true
	s.log.Info("embedded nats-server ready", "server_name", s.cfg.Name, "store_dir", s.opts.StoreDir,
		"client_listener", s.cfg.Listen != "", "cluster", s.cfg.Cluster.Name)
	return nil
}

// NATS returns the underlying nats-server, or nil before Start. It is meant
// for health checks and tests that need server internals.
func (s *Server) NATS() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// Name returns the configured server name.
func (s *Server) Name() string { return s.cfg.Name }

// InProcessConn returns an in-memory connection to the server; it
// implements nats.InProcessConnProvider.
func (s *Server) InProcessConn() (net.Conn, error) {
	ns := s.NATS()
	if ns == nil {
		return nil, ErrNotStarted
	}
	return ns.InProcessConn()
}

// ClientURL returns the URL of the TCP client listener, or "" when the
// server has none.
func (s *Server) ClientURL() string {
	ns := s.NATS()
	if ns == nil || s.opts.DontListen {
		return ""
	}
	return ns.ClientURL()
}

// Connect opens a NATS connection to the server through the in-process pipe.
// The connection never reconnects elsewhere: it lives and dies with the
// server.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if s.NATS() == nil {
		return nil, ErrNotStarted
	}
	all := append([]nats.Option{nats.InProcessServer(s), nats.Name("pushbridge-embedded")}, opts...)
	if s.cfg.Token != "" {
		all = append(all, nats.Token(s.cfg.Token))
	} else if s.cfg.Username != "" {
		all = append(all, nats.UserInfo(s.cfg.Username, s.cfg.Password))
	}
	nc, err := nats.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("embedded: connect in-process: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server. When the server has listeners, it enters lame
// duck mode first: raft leaderships move to other nodes and remaining
// clients are closed gradually. If ctx ends first, the server is stopped
// immediately. Shutdown is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ns := s.ns
	already := s.shutdown
	s.shutdown = true
	s.mu.Unlock()
	if ns == nil || already {
		if ns != nil {
			ns.WaitForShutdown()
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.opts.DontListen {
			// Lame duck mode needs a listener to close; without one
			// nats-server ignores it.
			ns.Shutdown()
		} else {
			ns.LameDuckShutdown()
		}
		ns.WaitForShutdown()
	}()
	select {
	case <-done:
		s.log.Info("embedded nats-server stopped")
		return nil
	case <-ctx.Done():
		ns.Shutdown()
		<-done
		return fmt.Errorf("embedded: lame duck shutdown cut short: %w", ctx.Err())
	}
}
