package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EpochMetadataKey is the stream metadata key that holds the epoch.
const EpochMetadataKey = "pushbridge_epoch"

// Config describes the event log stream. Zero fields take the defaults
// documented on each field.
type Config struct {
	// Stream is the JetStream stream name. Default "PUSHBRIDGE".
	Stream string
	// SubjectPrefix is the subject prefix; channel C is subject
	// "<SubjectPrefix>.C". Default "push".
	SubjectPrefix string
	// Replicas is the stream's replication factor. Default 1.
	Replicas int
	// Memory keeps the stream in memory instead of files. History is then
	// lost on restart (the epoch changes, clients are told).
	Memory bool
	// MaxMsgsPerChannel is the history kept per channel, like Superset's
	// GLOBAL_ASYNC_QUERIES_REDIS_STREAM_LIMIT. Default 1000.
	MaxMsgsPerChannel int64
	// MaxMsgs is the history kept over all channels. Default 1,000,000.
	MaxMsgs int64
	// MaxBytes caps the stream's size. Default -1 (no cap besides MaxMsgs).
	MaxBytes int64
	// MaxAge is how long an event is kept. Default 24h.
	MaxAge time.Duration
	// MaxMsgSize is the largest event payload in bytes. Default 256 KiB.
	MaxMsgSize int32
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	// Default 10m; never more than MaxAge.
	Duplicates time.Duration
	// MaxConsumers is set explicitly because nats-server 2.15 otherwise caps
	// a stream at 1000 consumers. Default 10000.
	MaxConsumers int
	// Placement pins the stream to a cluster or tagged servers.
	Placement *jetstream.Placement
	// Mirror, when set, makes the log read a local mirror of the origin
	// stream (multi-region); see Mirror.
	Mirror *Mirror
	// CreateTimeout bounds how long Open retries while JetStream is not yet
	// available (a cluster electing its meta leader). Default 60s.
	CreateTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "PUSHBRIDGE"
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "push"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxMsgsPerChannel == 0 {
		c.MaxMsgsPerChannel = 1000
	}
	if c.MaxMsgs == 0 {
		c.MaxMsgs = 1_000_000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = 256 << 10
	}
	if c.Duplicates == 0 {
		c.Duplicates = 10 * time.Minute
	}
	if c.Duplicates > c.MaxAge {
		c.Duplicates = c.MaxAge
	}
	if c.MaxConsumers == 0 {
		c.MaxConsumers = 10_000
	}
	if c.CreateTimeout == 0 {
		c.CreateTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field, by name.
func (c Config) Validate() error {
	if strings.ContainsAny(c.Stream, ". *>\t\r\n") {
		return fmt.Errorf("eventlog: stream name %q must not contain '.', '*', '>' or whitespace", c.Stream)
	}
	for _, tok := range strings.Split(c.SubjectPrefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("eventlog: subject prefix %q must be literal subject tokens", c.SubjectPrefix)
		}
	}
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("eventlog: replicas %d out of range 1..5", c.Replicas)
	case c.MaxMsgsPerChannel < 1:
		return fmt.Errorf("eventlog: max messages per channel %d must be positive", c.MaxMsgsPerChannel)
	case c.MaxMsgs < 1 && c.MaxMsgs != -1:
		return fmt.Errorf("eventlog: max messages %d must be positive or -1", c.MaxMsgs)
	case c.MaxAge < time.Second:
		return fmt.Errorf("eventlog: max age %s must be at least 1s", c.MaxAge)
	case c.MaxMsgSize < 64:
		return fmt.Errorf("eventlog: max message size %d is too small", c.MaxMsgSize)
	case c.MaxConsumers < 1:
		return fmt.Errorf("eventlog: max consumers %d must be positive", c.MaxConsumers)
	}
	return nil
}

// Log is the event log. Open it with Open.
type Log struct {
	js jetstream.JetStream
	// stream is the stream the node reads: the origin, or its local
	// mirror; readName is its name.
	stream   jetstream.Stream
	readName string
	// originJS reaches the origin stream when the node reads a mirror
	// (possibly in another JetStream domain); nil otherwise.
	originJS jetstream.JetStream
	cfg      Config
	epoch    uint64
	// prefix is SubjectPrefix + ".", the part of a subject before the channel.
	prefix string
	log    *slog.Logger

	lastAppend atomic.Uint64
}

// Open creates the stream, or updates an existing one to cfg's limits while
// keeping its epoch. While JetStream is unavailable (a cluster still electing
// its meta leader) it retries until Config.CreateTimeout or ctx ends.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Log{js: js, cfg: cfg, prefix: cfg.SubjectPrefix + ".", log: cfg.Logger}
	ctx, cancel := context.WithTimeout(ctx, cfg.CreateTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// Each attempt has its own deadline: a JetStream API request sent
		// while a cluster has no meta leader gets no answer at all, and
		// waiting on it for the whole CreateTimeout would never retry.
		actx, acancel := context.WithTimeout(ctx, attemptTimeout(attempt, cfg.CreateTimeout))
		err := l.ensure(actx)
		acancel()
		if err == nil {
			return l, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("eventlog: open stream %s (attempt %d): %w", cfg.Stream, attempt, err)
		}
		l.log.Info("jetstream not ready, retrying stream setup", "stream", cfg.Stream, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("eventlog: open stream %s: %w (last error: %w)", cfg.Stream, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// attemptTimeout bounds one attempt of Open: 2s, doubling up to 16s, so
// that a request lost while the cluster elects its meta leader is retried
// quickly and a slow but working cluster still gets time; never more than a
// quarter of the whole budget, so that a short budget still retries.
func attemptTimeout(attempt int, budget time.Duration) time.Duration {
	return min(2*time.Second<<min(attempt-1, 3), max(budget/4, 100*time.Millisecond))
}

// retryable reports errors a cluster outgrows: no meta leader yet, no
// quorum, a request timeout.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503 "JetStream system temporarily unavailable", 500 "insufficient
		// resources" during elections, 10008 cluster not available.
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10074 ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound
	}
	msg := err.Error()
	return strings.Contains(msg, "timeout") || strings.Contains(msg, "no responders") ||
		strings.Contains(msg, "temporarily unavailable")
}

func (l *Log) streamConfig(epoch uint64, existing map[string]string) jetstream.StreamConfig {
	meta := make(map[string]string, len(existing)+1)
	for k, v := range existing {
		meta[k] = v
	}
	meta[EpochMetadataKey] = strconv.FormatUint(epoch, 10)
	return jetstream.StreamConfig{
		Name:              l.cfg.Stream,
		Description:       "pushbridge event log: one subject per channel, ids are stream sequences",
		Subjects:          []string{l.prefix + ">"},
		Storage:           l.storage(),
		Replicas:          l.cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            l.cfg.MaxAge,
		MaxMsgsPerSubject: l.cfg.MaxMsgsPerChannel,
		MaxMsgs:           l.cfg.MaxMsgs,
		MaxBytes:          l.cfg.MaxBytes,
		MaxMsgSize:        l.cfg.MaxMsgSize,
		Duplicates:        l.cfg.Duplicates,
		AllowDirect:       true,
		// Replay relies on a channel's retained history being a suffix of
		// what was published; deleting single events would break that.
		DenyDelete:   true,
		MaxConsumers: l.cfg.MaxConsumers,
		Placement:    l.cfg.Placement,
		Metadata:     meta,
	}
}

func (l *Log) storage() jetstream.StorageType {
	if l.cfg.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

func (l *Log) ensure(ctx context.Context) error {
	if l.cfg.Mirror != nil {
		return l.openMirror(ctx)
	}
	l.readName = l.cfg.Stream
	stream, err := l.js.Stream(ctx, l.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		epoch := uint64(time.Now().Unix())
		stream, err = l.js.CreateStream(ctx, l.streamConfig(epoch, nil))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another node created it first: adopt its epoch.
			return l.ensure(ctx)
		}
		if err != nil {
			return fmt.Errorf("create stream: %w", err)
		}
		l.stream, l.epoch = stream, epoch
		l.log.Info("event log stream created", "stream", l.cfg.Stream, "epoch", epoch, "subjects", l.prefix+">")
		return nil
	case err != nil:
		return fmt.Errorf("look up stream: %w", err)
	}
	info := stream.CachedInfo()
	if info.Config.Mirror != nil {
		return fmt.Errorf("stream %s is a mirror; open it with OpenMirror", l.cfg.Stream)
	}
	epoch, err := parseEpoch(info.Config.Metadata)
	if err != nil {
		// A stream created by someone else: give it an epoch now. Ids
		// handed out before this had none, so nothing is invalidated.
		epoch = uint64(info.Created.Unix())
		l.log.Warn("event log stream has no epoch, assigning its creation time", "stream", l.cfg.Stream, "epoch", epoch)
	}
	want := l.streamConfig(epoch, info.Config.Metadata)
	if needsUpdate(info.Config, want) {
		stream, err = l.js.UpdateStream(ctx, want)
		if err != nil {
			return fmt.Errorf("update stream limits: %w", err)
		}
		l.log.Info("event log stream updated", "stream", l.cfg.Stream, "epoch", epoch)
	}
	l.stream, l.epoch = stream, epoch
	return nil
}

func parseEpoch(meta map[string]string) (uint64, error) {
	v, ok := meta[EpochMetadataKey]
	if !ok {
		return 0, errors.New("no epoch")
	}
	epoch, err := strconv.ParseUint(v, 10, 64)
	if err != nil || epoch == 0 || epoch > MaxEpoch {
		return 0, fmt.Errorf("bad epoch %q", v)
	}
	return epoch, nil
}

// needsUpdate compares the fields Open manages.
func needsUpdate(have, want jetstream.StreamConfig) bool {
	return have.MaxAge != want.MaxAge || have.MaxMsgsPerSubject != want.MaxMsgsPerSubject ||
		have.MaxMsgs != want.MaxMsgs || have.MaxBytes != want.MaxBytes || have.MaxMsgSize != want.MaxMsgSize ||
		have.Duplicates != want.Duplicates || !have.AllowDirect || !have.DenyDelete ||
		have.MaxConsumers != want.MaxConsumers || have.Replicas != want.Replicas ||
		len(have.Subjects) != 1 || have.Subjects[0] != want.Subjects[0] ||
		have.Metadata[EpochMetadataKey] != want.Metadata[EpochMetadataKey]
}

// Epoch returns the stream's epoch.
func (l *Log) Epoch() uint64 { return l.epoch }

// Stream returns the origin stream's name (where events are appended).
func (l *Log) Stream() string { return l.cfg.Stream }

// ReadStream returns the name of the stream the node reads: the origin or
// its local mirror.
func (l *Log) ReadStream() string { return l.readName }

// Config returns the effective configuration, defaults applied.
func (l *Log) Config() Config { return l.cfg }

// Subject returns the subject of a channel. It does not validate.
func (l *Log) Subject(channel string) string { return l.prefix + channel }

// Wildcard returns the subject filter that matches every channel.
func (l *Log) Wildcard() string { return l.prefix + ">" }

// ChannelOf returns the channel of a subject, or false if the subject is not
// one of this log's channels.
func (l *Log) ChannelOf(subject string) (string, bool) {
	if !strings.HasPrefix(subject, l.prefix) || len(subject) == len(l.prefix) {
		return "", false
	}
	return subject[len(l.prefix):], true
}

// ID returns the client-visible id of a sequence.
func (l *Log) ID(seq uint64) ID { return ID{Epoch: l.epoch, Seq: seq} }

// State is a snapshot of the stream's extent.
type State struct {
	FirstSeq uint64
	LastSeq  uint64
	Msgs     uint64
	Bytes    uint64
}

// State fetches the stream's current first and last sequence.
func (l *Log) State(ctx context.Context) (State, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return State{}, fmt.Errorf("eventlog: stream info: %w", err)
	}
	return State{FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Msgs: info.State.Msgs, Bytes: info.State.Bytes}, nil
}

// Conn returns the NATS connection the log uses.
func (l *Log) Conn() *nats.Conn { return l.js.Conn() }
