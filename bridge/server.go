package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// Server is the WebSocket gateway: an http.Handler that upgrades browser
// connections, and the machinery (Run) that feeds them from the event log.
// Create it with New; serve HTTP with it and call Run once.
type Server struct {
	cfg    Config
	log    *slog.Logger
	events *eventlog.Log
	// epoch is the event log's epoch, fixed for the server's life.
	epoch   uint64
	auth    *authenticator
	origins originPolicy
	hub     *hub
	metrics *metrics
	// slowLog limits the "closing slow client" lines to one a second.
	slowLog  logLimiter
	gatherer prometheus.Gatherer
	upgrader websocket.Upgrader
	epoll    *epoller
	registry registry

	replaySem chan struct{}
	coalescer *coalescer
	flushers  *flushers
	nextID    atomic.Uint64
	cursorSig cursorSignal

	ready    atomic.Bool
	draining atomic.Bool
	// notReady explains why the node is not ready (for /ready).
	notReady atomic.Value // string
	// stream is the last result of the periodic stream check.
	stream atomic.Pointer[streamCheck]

	// handlers counts upgrade handlers still joining their socket;
	// writers counts writer goroutines.
	handlers sync.WaitGroup
	writers  sync.WaitGroup

	checksMu sync.Mutex
	checks   []readyCheck

	// beforeHandshake, when set by a test, runs between registration and
	// the 101 response.
	beforeHandshake func()

	runOnce sync.Once
	// lifetime is cancelled when Run's shutdown is complete; replays and
	// waits started by handlers end with it.
	lifetime context.Context
	cancel   context.CancelFunc
}

// New validates cfg and builds a gateway that reads events from log. It
// starts nothing; call Run.
func New(cfg Config, log *eventlog.Log) (*Server, error) {
	cfg.setDefaults()
	if cfg.MaxPayloadBytes == 0 {
		cfg.MaxPayloadBytes = defaultMaxPayload(int64(log.Config().MaxMsgSize), log.Conn().MaxPayload())
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	auth, err := newAuthenticator(&cfg)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	reg := cfg.Registerer
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	h := newHub(cfg.RingBytes, cfg.RingPerChannel)
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		events:    log,
		epoch:     log.Epoch(),
		auth:      auth,
		origins:   newOriginPolicy(cfg.AllowedOrigins),
		hub:       h,
		slowLog:   logLimiter{period: time.Second},
		metrics:   newMetrics(reg, cfg.Statsd, func() float64 { return float64(h.channels.Load()) }),
		gatherer:  gatherer,
		replaySem: make(chan struct{}, cfg.ReplayConcurrency),
	}
	s.coalescer = newCoalescer(s)
	s.flushers = newFlushers()
	s.registry.init()
	s.cursorSig.init()
	s.lifetime, s.cancel = context.WithCancel(context.Background())
	s.upgrader = websocket.Upgrader{
		// The Origin was checked before the upgrade, with the refusal
		// logged and counted.
		CheckOrigin:     func(*http.Request) bool { return true },
		ReadBufferSize:  256,
		WriteBufferSize: 256,
		Error:           s.handshakeError,
	}
	s.notReady.Store("starting")
	if !cfg.DisableNetpoll {
		ep, err := newEpoller(cfg.Logger)
		if err != nil {
			s.log.Warn("netpoll unavailable, every socket gets a reader goroutine", "err", err)
		} else {
			s.epoll = ep
		}
	}
	return s, nil
}

// id returns the client-visible id of a sequence.
func (s *Server) id(seq uint64) eventlog.ID { return eventlog.ID{Epoch: s.epoch, Seq: seq} }

// Gatherer returns the registry the metrics were registered with, when it
// can be gathered (for serving /metrics).
func (s *Server) Gatherer() prometheus.Gatherer { return s.gatherer }

// Run feeds sockets from the event log until ctx ends, then shuts the
// gateway down: it refuses new upgrades, closes every socket with 1001
// (spread over ShutdownSpread) so clients resume elsewhere with last_id, and
// returns once every goroutine it started has exited. Call it once. The
// HTTP server should stop accepting before ctx ends.
func (s *Server) Run(ctx context.Context) error {
	err := errors.New("bridge: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx) })
	return err
}

func (s *Server) run(ctx context.Context) error {
	inner, cancelInner := context.WithCancel(context.Background())
	defer cancelInner()
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(inner); err != nil && inner.Err() == nil {
				errc <- fmt.Errorf("bridge: %s: %w", name, err)
			}
		}()
	}
	if s.epoll != nil {
		start("poller", s.epoll.run)
	}
	start("pinger", s.runPinger)
	start("stream check", s.runStreamCheck)
	start("coalescer", s.coalescer.run)
	start("flushers", s.flushers.run)
	start("dispatcher", s.runDispatcher)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("gateway component failed, shutting down", "err", runErr)
	}
	s.shutdown()
	cancelInner()
	wg.Wait()
	return runErr
}

// shutdown refuses new sockets and closes the open ones with 1001.
func (s *Server) shutdown() {
	s.draining.Store(true)
	s.ready.Store(false)
	s.notReady.Store("shutting down")
	conns := s.registry.all()
	s.log.Info("gateway shutting down, closing sockets", "connections", len(conns), "spread", s.cfg.ShutdownSpread)
	// Spread the closes so that clients do not reconnect all at once.
	step := time.Duration(0)
	if len(conns) > 0 {
		step = s.cfg.ShutdownSpread / time.Duration(len(conns))
	}
	next := time.Now()
	for _, c := range conns {
		c.closeWith(closeGoingAway, "server shutting down: reconnect with last_id", reasonShutdown)
		if step > 0 {
			next = next.Add(step)
			if d := time.Until(next); d > time.Millisecond {
				time.Sleep(d)
			}
		}
	}
	// Joins in progress end with the lifetime context.
	s.cancel()
	s.handlers.Wait()
	// Give the closing handshakes their grace, then drop what is left.
	deadline := time.Now().Add(s.cfg.CloseGrace + 100*time.Millisecond)
	for s.hub.connections.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range s.registry.all() {
		c.terminate(reasonShutdown)
	}
	s.writers.Wait()
}

// Ready reports whether the node serves upgrades, and if not, why: it is
// ready once its live consumer has caught up, while its NATS connection is
// up and the stream it reads answers (see runStreamCheck).
func (s *Server) Ready() (bool, string) {
	if s.ready.Load() {
		if status := s.events.Conn().Status(); status != nats.CONNECTED {
			return false, "nats connection " + status.String()
		}
		if st := s.stream.Load(); st != nil && st.Failures >= streamCheckFailures {
			return false, fmt.Sprintf("stream %s unavailable: %d checks failed: %s", s.events.ReadStream(), st.Failures, st.Error)
		}
		return true, ""
	}
	why, _ := s.notReady.Load().(string)
	return false, why
}

// streamCheckFailures is how many stream checks in a row must fail before
// the node reports not ready: one slow answer is not an outage.
const streamCheckFailures = 3

// streamCheck is the stream's state as the periodic check last saw it,
// reported in /ready.
type streamCheck struct {
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	Msgs      uint64    `json:"msgs"`
	CheckedAt time.Time `json:"checked_at"`
	// Failures counts the checks failed since the last that succeeded;
	// Error is the last failure. The state fields are from that success.
	Failures int    `json:"consecutive_failures,omitempty"`
	Error    string `json:"error,omitempty"`
}

// runStreamCheck reads the stream's state every streamCheckInterval until
// ctx ends and records it. The dispatcher's readiness check uses it, and
// after streamCheckFailures failures in a row (the stream was deleted, its
// leader is gone) the node reports not ready although NATS is connected.
func (s *Server) runStreamCheck(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.streamCheckInterval)
	defer tick.Stop()
	for {
		s.checkStream(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (s *Server) checkStream(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, max(2*s.cfg.streamCheckInterval, time.Second))
	st, err := s.events.State(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	prev := s.stream.Load()
	next := &streamCheck{FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Msgs: st.Msgs, CheckedAt: time.Now()}
	if err != nil {
		if prev != nil {
			*next = *prev
		}
		next.Failures++
		next.Error = err.Error()
		if next.Failures == streamCheckFailures {
			s.log.Error("event log stream unavailable: the node reports not ready", "stream", s.events.ReadStream(),
				"failed_checks", next.Failures, "err", err)
		}
	} else if prev != nil && prev.Failures >= streamCheckFailures {
		s.log.Info("event log stream available again", "stream", s.events.ReadStream(), "last_seq", st.LastSeq)
	}
	s.stream.Store(next)
}

// readyCheck is a component whose state /ready reports.
type readyCheck struct {
	name  string
	check func() (ok bool, detail string)
}

// AddReadyCheck adds a component (the Redis mirror in serve) to /ready's
// report. Components do not gate readiness: the sockets are served whatever
// their state. Call it before serving.
func (s *Server) AddReadyCheck(name string, check func() (ok bool, detail string)) {
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	s.checks = append(s.checks, readyCheck{name: name, check: check})
}

// componentStates runs the added checks.
func (s *Server) componentStates() (map[string]string, bool) {
	s.checksMu.Lock()
	checks := s.checks
	s.checksMu.Unlock()
	if len(checks) == 0 {
		return nil, true
	}
	out := make(map[string]string, len(checks))
	all := true
	for _, c := range checks {
		ok, detail := c.check()
		if !ok {
			all = false
			detail = "degraded: " + detail
		} else if detail == "" {
			detail = "ok"
		}
		out[c.name] = detail
	}
	return out, all
}

// Connections returns the number of open sockets on this node.
func (s *Server) Connections() int { return int(s.hub.connections.Load()) }
