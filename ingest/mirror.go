package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// Config configures a Mirror. Zero fields take the documented defaults,
// which are superset-websocket's where it has the setting.
type Config struct {
	// Prefix is redisStreamPrefix; the firehose is Prefix + "full".
	// Default "async-events-".
	Prefix string
	// ReadCount is entries per XREAD (redisStreamReadCount). Default 100.
	ReadCount int
	// ReadBlock is XREAD's BLOCK (redisStreamReadBlockMs). Default 5s. A
	// call blocks at most 1 s, so that shutdown and lease changes are
	// prompt; an idle mirror just reads again.
	ReadBlock time.Duration
	// Start is where a mirror without a checkpoint begins: "new" (default;
	// superset-websocket's "$"), "all" (what the firehose still holds) or a
	// Redis id (entries after it).
	Start string
	// DeadLetterSubject, when set, receives entries that cannot be
	// mirrored, with their Redis id and the reason in headers.
	DeadLetterSubject string
	// Bucket is the NATS KV bucket for the checkpoint and the lease.
	// Default "PUSHBRIDGE_INGEST".
	Bucket string
	// LeaseTTL is how long the active mirror's lease lasts unrenewed; a
	// standby takes over after it. Default 10s.
	LeaseTTL time.Duration
	// MaxInFlight bounds the publishes awaiting acknowledgement. Default
	// 1024.
	MaxInFlight int
	// CheckpointInterval is how often the checkpoint is written while
	// entries flow. Default 100ms.
	CheckpointInterval time.Duration
	// Instance names this mirror in the lease. Default host name and pid.
	Instance string
	// Conn is the NATS connection the mirror publishes on and keeps its
	// lease and checkpoint with. Default: the event log's connection. Give
	// the mirror a connection of its own made with nats.ReconnectBufSize(-1):
	// a connection that buffers publishes while it reconnects can deliver
	// them after the lease has passed to another mirror.
	Conn *nats.Conn
	// Domain is the JetStream domain that holds the event log and the
	// mirror's bucket ("" for the local one), as the event log's
	// connection addresses it (nats.domain).
	Domain string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "async-events-"
	}
	if c.ReadCount <= 0 {
		c.ReadCount = 100
	}
	if c.ReadBlock <= 0 {
		c.ReadBlock = 5 * time.Second
	}
	if c.Start == "" || c.Start == "$" {
		c.Start = "new"
	}
	if c.Start == "0" {
		c.Start = "all"
	}
	if c.Bucket == "" {
		c.Bucket = "PUSHBRIDGE_INGEST"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 100 * time.Millisecond
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(rand.Uint64()%10000, 10)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
}

// Mirror copies Superset's Redis firehose into the event log. Create it
// with New and call Run once.
type Mirror struct {
	cfg      Config
	rdb      redis.UniversalClient
	nc       *nats.Conn
	js       jetstream.JetStream
	events   *eventlog.Log
	log      *slog.Logger
	metrics  *metrics
	firehose string
	cpKey    string
	leaseKey string

	state     atomic.Value // string, for Ready and logs
	lastState string       // owned by Run's goroutine

	// clock is the origin of leaseUntil: nanoseconds on the monotonic
	// clock after which this mirror no longer counts as the lease holder.
	clock      time.Time
	leaseUntil atomic.Int64
	// backoff paces retries after failures; owned by Run's goroutine (the
	// pipeline runs on it and resets it once it reads).
	backoff *backoff

	// renewHook, when set (tests), runs before each lease renewal with the
	// term's context: a hook that blocks stalls the renewals.
	renewHook func(context.Context)
}

// New builds a mirror that reads rdb and appends to events through a
// JetStream context on the log's connection. It starts nothing.
func New(cfg Config, rdb redis.UniversalClient, events *eventlog.Log) (*Mirror, error) {
	cfg.setDefaults()
	if cfg.Start != "new" && cfg.Start != "all" {
		if _, err := parseStreamID(cfg.Start); err != nil {
			return nil, fmt.Errorf("ingest: start %q is not new, all or a Redis id", cfg.Start)
		}
	}
	if cfg.ReadBlock > time.Second {
		cfg.ReadBlock = time.Second
	}
	nc := cfg.Conn
	if nc == nil {
		nc = events.Conn()
	}
	jsOpts := []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(2 * cfg.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(publishTimeout),
	}
	js, err := eventlog.NewJetStream(nc, cfg.Domain, jsOpts...)
	if err != nil {
		return nil, fmt.Errorf("ingest: jetstream: %w", err)
	}
	m := &Mirror{
		cfg:      cfg,
		rdb:      rdb,
		nc:       nc,
		js:       js,
		events:   events,
		log:      cfg.Logger.With("component", "ingest"),
		metrics:  newMetrics(cfg.Registerer),
		firehose: cfg.Prefix + "full",
		clock:    time.Now(),
		backoff:  newBackoff(100*time.Millisecond, 5*time.Second),
	}
	m.cpKey = kvKey("checkpoint.", m.firehose)
	m.leaseKey = kvKey("lease.", m.firehose)
	m.state.Store("starting")
	if nc.Opts.ReconnectBufSize >= 0 {
		m.log.Warn("the mirror's NATS connection buffers publishes while it reconnects; give it one made with nats.ReconnectBufSize(-1)",
			"reconnect_buf_size", nc.Opts.ReconnectBufSize)
	}
	return m, nil
}

// publishTimeout bounds the wait for a publish's acknowledgement.
const publishTimeout = 10 * time.Second

// leaseMargin is how long before its lease expires (by the writer's clock)
// a mirror stops publishing: the renewal has that long to come back, and the
// mirrors' clocks may differ by up to that much.
func (m *Mirror) leaseMargin() time.Duration { return m.cfg.LeaseTTL / 4 }

// holdLease records that the lease was acquired or renewed by a request
// sent at sent: it is ours until sent + TTL - margin on the local monotonic
// clock, whatever happens to the renewals.
func (m *Mirror) holdLease(sent time.Time) {
	m.leaseUntil.Store(int64(sent.Sub(m.clock) + m.cfg.LeaseTTL - m.leaseMargin()))
}

// dropLease records that the lease is no longer ours.
func (m *Mirror) dropLease() { m.leaseUntil.Store(0) }

// leaseValid reports whether the lease is still ours by the local clock.
// The pipeline checks it before every publish and checkpoint write.
func (m *Mirror) leaseValid() bool {
	return int64(time.Since(m.clock)) < m.leaseUntil.Load()
}

// errLeaseExpired ends a leadership term whose lease was not renewed in
// time (a stalled renewal, a paused process): another mirror may hold it.
var errLeaseExpired = errors.New("lease expired: not renewed in time, stopped publishing")

// stopLeading resets what only a leader reports.
func (m *Mirror) stopLeading() {
	m.dropLease()
	m.metrics.leader.Set(0)
	m.metrics.lagEntries.Set(0)
	m.metrics.lagSeconds.Set(0)
}

// Ready reports whether the mirror works: it publishes (leader) or stands
// by for the mirror that does.
func (m *Mirror) Ready() (bool, string) {
	s, _ := m.state.Load().(string)
	switch {
	case s == "leader":
		return true, "leader, mirroring " + m.firehose
	case len(s) >= 7 && s[:7] == "standby":
		return true, s
	}
	return false, s
}

// setState records and logs a change of state, once per change.
func (m *Mirror) setState(s string, err error) {
	m.state.Store(s)
	if s == m.lastState {
		return
	}
	m.lastState = s
	if err != nil {
		m.log.Warn("ingest state changed", "state", s, "err", err)
	} else {
		m.log.Info("ingest state changed", "state", s)
	}
}

// Run mirrors until ctx ends: it waits for the lease, mirrors while it
// holds it, and retries with capped, jittered backoff after failures. It
// returns nil when ctx ends.
func (m *Mirror) Run(ctx context.Context) error {
	var kv jetstream.KeyValue
	for ctx.Err() == nil {
		var err error
		if kv == nil {
			kv, err = m.bucket(ctx)
			if err != nil {
				m.setState("nats unavailable: "+err.Error(), err)
				m.backoff.wait(ctx)
				continue
			}
		}
		sent := time.Now() // the lease's expiry is computed after this
		rev, holder, err := acquireLease(ctx, kv, m.leaseKey, m.cfg.Instance, m.cfg.LeaseTTL)
		if errors.Is(err, errLeaseHeld) {
			m.stopLeading()
			m.setState("standby (lease held by "+holder+")", nil)
			select {
			case <-ctx.Done():
			case <-time.After(m.cfg.LeaseTTL / 3):
			}
			continue
		}
		if err != nil {
			m.setState("nats unavailable: "+err.Error(), err)
			m.backoff.wait(ctx)
			continue
		}
		m.holdLease(sent)
		err = m.lead(ctx, kv, rev)
		m.stopLeading()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			m.setState("failing: "+err.Error(), err)
			m.backoff.wait(ctx)
		}
	}
	return nil
}

func (m *Mirror) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := m.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      m.cfg.Bucket,
		Description: "pushbridge ingest checkpoints and leases",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    m.events.Config().Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest bucket %s: %w", m.cfg.Bucket, err)
	}
	return kv, nil
}

// lead mirrors while holding the lease. It renews the lease in the
// background and stops the pipeline the moment a renewal fails; the
// pipeline itself stops publishing when the lease's local deadline passes
// unrenewed (a renewal that hangs, a paused process).
func (m *Mirror) lead(ctx context.Context, kv jetstream.KeyValue, rev uint64) error {
	m.metrics.leader.Set(1)
	// "leader" once the pipeline has read the firehose (readOnce).
	m.setState("starting: lease acquired", nil)
	lctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	var revMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(m.cfg.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(lctx, m.cfg.LeaseTTL/3)
			if m.renewHook != nil {
				m.renewHook(lctx)
			}
			sent := time.Now()
			revMu.Lock()
			next, err := renewLease(rctx, kv, m.leaseKey, m.cfg.Instance, m.cfg.LeaseTTL, rev)
			if err == nil {
				rev = next
				m.holdLease(sent)
			}
			revMu.Unlock()
			rcancel()
			if err != nil {
				if lctx.Err() != nil {
					return // stopping anyway
				}
				m.dropLease()
				cancel(fmt.Errorf("lease lost: %w", err))
				return
			}
		}
	}()
	p := newPipeline(m, kv)
	err := p.run(lctx)
	cancel(nil)
	wg.Wait()
	if cause := context.Cause(lctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	// Leave cleanly: save the position (only while the lease is still ours)
	// and hand the lease over.
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	p.save(sctx, true)
	revMu.Lock()
	if ctx.Err() != nil && m.leaseValid() {
		releaseLease(sctx, kv, m.leaseKey, rev)
	}
	revMu.Unlock()
	return err
}

// backoff is capped exponential backoff with jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max, cur: min} }

func (b *backoff) wait(ctx context.Context) {
	d := b.cur/2 + rand.N(b.cur/2+1)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	b.cur = min(b.cur*2, b.max)
}

func (b *backoff) reset() { b.cur = b.min }
