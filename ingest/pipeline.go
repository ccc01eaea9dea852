package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// SkipReasonHeader names why a dead-lettered entry was skipped.
const SkipReasonHeader = "Pushbridge-Skip-Reason"

// pipeline is one leadership term of the mirror: it reads the firehose from
// the checkpoint and publishes in order. It is owned by one goroutine.
type pipeline struct {
	m  *Mirror
	kv jetstream.KeyValue

	// cursor is the last entry read; acked the last entry up to which
	// everything is stored (or skipped).
	cursor, acked streamID
	// cursorOrd and ackedOrd are their ordinals in the firehose (Redis 7
	// entries-added numbering; see probe.go), or -1 when unknown.
	cursorOrd, ackedOrd int64
	// pending are the entries read and not yet settled, in Redis order.
	pending []*inflight
	// busy counts in-flight publishes per channel (0 or 1).
	busy map[string]int
	// overlap recognises entries stored before this pass began.
	overlap overlapCheck

	// saved is the checkpoint as last read or written, cpRev its KV
	// revision: the next write is a compare-and-set on it.
	saved   streamID
	cpRev   uint64
	savedAt time.Time

	lastProbe time.Time
	// gapReported is the end of the last lost range reported.
	gapReported streamID
	// readOK is set once an XREAD succeeded in this term.
	readOK bool
	// stuck paces rewinds that make no progress (the stream unavailable);
	// rewoundAt is where the last rewind went back to.
	stuck     *backoff
	rewoundAt streamID
}

func newPipeline(m *Mirror, kv jetstream.KeyValue) *pipeline {
	return &pipeline{
		m: m, kv: kv, busy: make(map[string]int),
		cursorOrd: -1, ackedOrd: -1,
		overlap:   overlapCheck{span: 2 * m.cfg.MaxInFlight},
		stuck:     newBackoff(50*time.Millisecond, 5*time.Second),
		rewoundAt: streamID{ms: ^uint64(0)},
	}
}

// inflight is an entry read and not yet settled. fut is nil for an entry
// that needs no publish (skipped, or found stored). failed is set once its
// publish failed: the future's result was taken, and the entry must be
// published again.
type inflight struct {
	id      streamID
	ord     int64
	channel string
	fut     jetstream.PubAckFuture
	failed  bool
}

// errRewind asks the pipeline to restart from the last acknowledged entry.
var errRewind = errors.New("rewind")

// JetStream error codes (nats-server jetstream_errors_generated.go) that
// mean a message itself is too large for the stream: publishing it again
// cannot succeed, so the entry is skipped. Every other refusal (10060
// "expected stream does not match", an account out of storage...) is a
// condition of the stream or its configuration: the entry is retried.
const (
	jsErrMessageTooLarge = 10054 // JSStreamMessageExceedsMaximumErr
	jsErrHeaderTooLarge  = 10097 // JSStreamHeaderExceedsMaximumErr
)

func (p *pipeline) run(ctx context.Context) error {
	if err := p.start(ctx); err != nil {
		return err
	}
	for ctx.Err() == nil {
		err := p.readOnce(ctx)
		if errors.Is(err, errRewind) {
			p.rewind(ctx)
			continue
		}
		if err != nil {
			p.finish(!errors.Is(err, errLeaseExpired))
			return err
		}
	}
	p.finish(true)
	return nil
}

// finish collects the acknowledgements still coming, so that the final
// checkpoint covers them (when collect), and forgets the rest.
func (p *pipeline) finish(collect bool) {
	if collect {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = p.settle(sctx, true)
		cancel()
	}
	p.drain(context.Background())
}

// start finds where to resume.
func (p *pipeline) start(ctx context.Context) error {
	m := p.m
	if mp := m.nc.MaxPayload(); mp > 0 && int64(m.events.Config().MaxMsgSize) > mp {
		m.log.Warn("stream.maxMsgSize exceeds the NATS server's max_payload: larger entries are skipped as too_large",
			"max_msg_size", m.events.Config().MaxMsgSize, "max_payload", mp)
	}
	cp, rev, ok, err := loadCheckpoint(ctx, p.kv, m.cpKey)
	if err != nil {
		return err
	}
	if ok {
		// The checkpoint is not written again until the position moves: a
		// term that fails before it reads anything leaves it as it was.
		p.acked, _ = parseStreamID(cp.ID)
		p.ackedOrd = cp.ord()
		p.saved, p.cpRev, p.savedAt = p.acked, rev, time.Now()
		m.metrics.checkpointMs.Set(float64(p.acked.ms))
		m.log.Info("ingest resuming", "firehose", m.firehose, "after", cp.ID, "written_by", cp.Holder,
			"age", time.Since(time.UnixMilli(cp.At)).Round(time.Millisecond))
	} else {
		if p.acked, p.ackedOrd, err = p.startPosition(ctx); err != nil {
			return err
		}
		// Checkpointed at once, so that a crash right after starting does
		// not skip entries (start "new" would otherwise move on). Creating
		// it fails if another mirror created it meanwhile: the next term
		// resumes from that one, and this term must not write its own
		// start position over it (the final save would: entries between
		// the two were never read).
		if p.cpRev, err = writeCheckpoint(ctx, p.kv, m.cpKey, p.checkpoint(), 0); err != nil {
			p.acked, p.ackedOrd = p.saved, -1
			return err
		}
		p.saved, p.savedAt = p.acked, time.Now()
		m.log.Info("ingest starting without a checkpoint", "firehose", m.firehose, "start", m.cfg.Start, "after", p.acked.String())
	}
	p.cursor, p.cursorOrd = p.acked, p.ackedOrd
	if ok {
		// Without a checkpoint no mirror has published: each creates it
		// before it reads.
		p.overlap.begin()
		p.checkGap(ctx)
	}
	return nil
}

// startPosition resolves Config.Start for a first run, with the
// position's ordinal when Redis tells it (-1 otherwise).
func (p *pipeline) startPosition(ctx context.Context) (streamID, int64, error) {
	switch p.m.cfg.Start {
	case "all", "new":
		info, err := p.m.rdb.XInfoStream(ctx, p.m.firehose).Result()
		if err != nil {
			if isNoSuchKey(err) {
				return streamID{}, 0, nil // no firehose yet: everything is new
			}
			p.m.metrics.redisErrors.Inc()
			return streamID{}, -1, fmt.Errorf("xinfo stream %s: %w", p.m.firehose, err)
		}
		st := parseStreamInfo(info)
		if p.m.cfg.Start == "all" {
			// Before the first entry held: its ordinal is one less.
			return streamID{}, st.ordBeforeFirst(), nil
		}
		return st.last, st.ordOfLast(), nil
	}
	id, err := parseStreamID(p.m.cfg.Start)
	return id, -1, err
}

func isNoSuchKey(err error) bool {
	return err != nil && (errors.Is(err, redis.Nil) || err.Error() == "ERR no such key")
}

// readOnce reads one batch and publishes it.
func (p *pipeline) readOnce(ctx context.Context) error {
	m := p.m
	if !m.leaseValid() {
		return errLeaseExpired
	}
	res, err := m.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{m.firehose, p.cursor.String()},
		Count:   int64(m.cfg.ReadCount),
		Block:   m.cfg.ReadBlock,
	}).Result()
	if errors.Is(err, redis.Nil) {
		res, err = nil, nil // nothing new within the block time
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		m.metrics.redisErrors.Inc()
		return fmt.Errorf("xread %s: %w", m.firehose, err)
	}
	var n int
	for _, stream := range res {
		for _, msg := range stream.Messages {
			n++
			if err := p.handle(ctx, msg); err != nil {
				return err
			}
		}
	}
	// Settle what is done; when caught up, wait for every acknowledgement
	// so that the checkpoint and the lag are current.
	if err := p.settle(ctx, n < m.cfg.ReadCount); err != nil {
		return err
	}
	if !p.readOK && len(p.pending) == 0 {
		// Leader only now: the term reads the firehose from a known
		// position (with start "new", entries added before it are not
		// mirrored) and everything it read so far is settled. Failures before this
		// no longer slow the next retry.
		p.readOK = true
		m.backoff.reset()
		m.setState("leader", nil)
	}
	p.save(ctx, false)
	if time.Since(p.lastProbe) > time.Second {
		p.lastProbe = time.Now()
		p.probe(ctx)
	}
	return nil
}

// handle publishes one entry, or settles it at once if it cannot or need
// not be published.
func (p *pipeline) handle(ctx context.Context, msg redis.XMessage) error {
	m := p.m
	m.metrics.read.Inc()
	id, err := parseStreamID(msg.ID)
	if err != nil {
		return fmt.Errorf("firehose returned %w", err)
	}
	p.cursor = id
	if p.cursorOrd >= 0 {
		p.cursorOrd++
	}
	channel, data, reason := parseEntry(msg.Values, int(m.events.Config().MaxMsgSize))
	if reason != "" {
		p.overlap.step(false)
		p.skip(msg.ID, reason, msg.Values)
		p.settled(id)
		return nil
	}
	if p.overlap.active {
		v, err := p.overlap.check(ctx, m, channel, id)
		if err != nil {
			return err
		}
		p.overlap.step(v == notStored)
		if v == isStored {
			m.metrics.duplicates.Inc()
			p.settled(id)
			return nil
		}
	}
	// One entry per channel in flight, a bounded number in all: a failed
	// publish never has a later entry of its channel behind it.
	for p.busy[channel] > 0 || len(p.pending) >= m.cfg.MaxInFlight {
		if err := p.settleHead(ctx, true); err != nil {
			return err
		}
	}
	if !m.leaseValid() {
		return errLeaseExpired
	}
	msgOut := &nats.Msg{
		Subject: m.events.Subject(channel),
		Data:    data,
		Header:  nats.Header{eventlog.RedisIDHeader: []string{msg.ID}},
	}
	fut, err := m.js.PublishMsgAsync(msgOut, jetstream.WithMsgID(m.firehose+":"+msg.ID), jetstream.WithExpectStream(m.events.Stream()))
	if errors.Is(err, nats.ErrMaxPayload) {
		// Over the server's max_payload (stream.maxMsgSize is larger than
		// it): no retry can send it.
		p.skip(msg.ID, skipTooLarge, msg.Values)
		p.settled(id)
		return nil
	}
	if err != nil {
		m.metrics.publishErrors.Inc()
		m.log.Warn("publish failed; rewinding to the last acknowledged entry", "redis_id", msg.ID, "channel", channel, "err", err)
		return errRewind
	}
	p.busy[channel]++
	p.pending = append(p.pending, &inflight{id: id, ord: p.cursorOrd, channel: channel, fut: fut})
	return nil
}

// settled queues an entry that needs no publish: it settles in order with
// the publishes before it.
func (p *pipeline) settled(id streamID) {
	p.pending = append(p.pending, &inflight{id: id, ord: p.cursorOrd})
}

// settle settles finished entries at the head; with all, it waits for
// every pending entry.
func (p *pipeline) settle(ctx context.Context, all bool) error {
	for len(p.pending) > 0 {
		done, err := p.settleHeadNow(ctx, all)
		if err != nil {
			return err
		}
		if !done {
			return nil
		}
	}
	return nil
}

// settleHead settles the oldest pending entry, waiting if block.
func (p *pipeline) settleHead(ctx context.Context, block bool) error {
	_, err := p.settleHeadNow(ctx, block)
	return err
}

func (p *pipeline) settleHeadNow(ctx context.Context, block bool) (bool, error) {
	if len(p.pending) == 0 {
		return false, nil
	}
	head := p.pending[0]
	if head.failed {
		return false, errRewind
	}
	if head.fut != nil {
		var ack *jetstream.PubAck
		var err error
		if block {
			select {
			case ack = <-head.fut.Ok():
			case err = <-head.fut.Err():
			case <-ctx.Done():
				return false, ctx.Err()
			}
		} else {
			select {
			case ack = <-head.fut.Ok():
			case err = <-head.fut.Err():
			default:
				return false, nil
			}
		}
		p.busy[head.channel]--
		if err != nil {
			p.m.metrics.publishErrors.Inc()
			var apiErr *jetstream.APIError
			switch {
			case errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrMessageTooLarge || apiErr.ErrorCode == jsErrHeaderTooLarge):
				// The stream refuses this message for good: skip it
				// rather than loop.
				p.skip(head.id.String(), skipTooLarge, map[string]any{"channel_id": head.channel})
			case errors.As(err, &apiErr) && apiErr.Code == 400:
				// The stream refuses every publish (a misconfiguration):
				// end the term; it is retried with backoff and the error
				// shows in the state.
				head.failed = true
				return false, fmt.Errorf("stream %s refused entry %s: %w", p.m.events.Stream(), head.id, err)
			default:
				head.failed = true
				p.m.log.Warn("publish not acknowledged; rewinding to the last acknowledged entry",
					"redis_id", head.id.String(), "channel", head.channel, "err", err)
				return false, errRewind
			}
		} else if ack.Duplicate {
			p.m.metrics.duplicates.Inc()
		} else {
			p.m.metrics.published.Inc()
			p.m.metrics.ackLatency.Observe(time.Since(time.UnixMilli(int64(head.id.ms))).Seconds())
		}
	}
	p.acked, p.ackedOrd = head.id, head.ord
	p.pending[0] = nil
	p.pending = p.pending[1:]
	return true, nil
}

// rewind restarts reading after the last acknowledged entry, once every
// publish in flight has settled. Entries after it that are stored already
// are recognised again (overlapCheck): dedupe alone would not do if the
// stream stayed unavailable for longer than its window.
func (p *pipeline) rewind(ctx context.Context) {
	p.m.metrics.rewinds.Inc()
	p.drain(ctx)
	if p.acked == p.rewoundAt {
		p.stuck.wait(ctx) // no progress since the last rewind
	} else {
		p.stuck.reset()
	}
	p.rewoundAt = p.acked
	p.cursor, p.cursorOrd = p.acked, p.ackedOrd
	p.overlap.begin()
	p.checkGap(ctx)
}

// drain waits, bounded, for the publishes in flight and forgets them.
func (p *pipeline) drain(ctx context.Context) {
	deadline := time.After(15 * time.Second)
	for _, f := range p.pending {
		if f.fut == nil || f.failed {
			continue // nothing, or nothing more, to wait for
		}
		select {
		case <-f.fut.Ok():
		case <-f.fut.Err():
		case <-deadline:
		case <-ctx.Done():
		}
	}
	clear(p.pending)
	p.pending = p.pending[:0]
	clear(p.busy)
}

// save writes the checkpoint when it moved and the interval passed (or
// when forced), while the lease is ours.
func (p *pipeline) save(ctx context.Context, force bool) {
	if !p.saved.less(p.acked) || (!force && time.Since(p.savedAt) < p.m.cfg.CheckpointInterval) || !p.m.leaseValid() {
		return
	}
	if err := p.write(ctx); err != nil {
		p.m.log.Warn("checkpoint not saved; will retry", "err", err)
	}
}

// write stores acked as the checkpoint by compare-and-set on the revision
// last read or written, and only while the lease is ours. If another
// mirror wrote the checkpoint meanwhile (a deposed leader finishing its
// last acknowledgements), the checkpoint never moves backwards: a newer
// position is kept, an older one is overwritten.
func (p *pipeline) write(ctx context.Context) error {
	m := p.m
	for attempt := 0; ; attempt++ {
		if !m.leaseValid() {
			return errLeaseExpired
		}
		rev, err := writeCheckpoint(ctx, p.kv, m.cpKey, p.checkpoint(), p.cpRev)
		if err == nil {
			p.saved, p.cpRev, p.savedAt = p.acked, rev, time.Now()
			m.metrics.checkpointMs.Set(float64(p.acked.ms))
			return nil
		}
		if !errors.Is(err, errCheckpointConflict) || attempt > 0 {
			return err
		}
		cur, rev, ok, lerr := loadCheckpoint(ctx, p.kv, m.cpKey)
		if lerr != nil {
			return fmt.Errorf("%w (and reading it back: %w)", err, lerr)
		}
		if !ok {
			p.cpRev = 0
			continue
		}
		id, _ := parseStreamID(cur.ID)
		m.log.Warn("the checkpoint was written by another mirror", "checkpoint", cur.ID, "written_by", cur.Holder, "acked", p.acked.String())
		p.cpRev = rev
		if !id.less(p.acked) {
			p.saved, p.savedAt = id, time.Now() // ahead of us: keep it
			return nil
		}
	}
}

// checkpoint is acked as a checkpoint written now.
func (p *pipeline) checkpoint() checkpoint {
	cp := checkpoint{ID: p.acked.String(), At: time.Now().UnixMilli(), Holder: p.m.cfg.Instance}
	if p.ackedOrd >= 0 {
		ord := p.ackedOrd
		cp.Ord = &ord
	}
	return cp
}

// skip counts, logs and dead-letters an entry that cannot be mirrored.
func (p *pipeline) skip(redisID, reason string, values map[string]any) {
	m := p.m
	m.metrics.skipped.WithLabelValues(reason).Inc()
	m.log.Warn("skipping firehose entry that cannot be mirrored", "redis_id", redisID, "reason", reason)
	if m.cfg.DeadLetterSubject == "" {
		return
	}
	body, _ := json.Marshal(values)
	if raw, ok := values["data"].(string); ok {
		body = []byte(raw)
	}
	msg := &nats.Msg{Subject: m.cfg.DeadLetterSubject, Data: body, Header: nats.Header{
		eventlog.RedisIDHeader: []string{redisID}, SkipReasonHeader: []string{reason},
	}}
	if err := m.nc.PublishMsg(msg); err == nil {
		m.metrics.deadLettered.Inc()
	}
}
