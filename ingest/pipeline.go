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
	// pending are the entries read and not yet settled, in Redis order.
	pending []*inflight
	// busy counts in-flight publishes per channel (0 or 1).
	busy map[string]int
	// verify is how many more entries to check against the stream before
	// publishing (after a checkpoint older than the dedupe window allows).
	verify int

	saved     streamID
	savedAt   time.Time
	lastProbe time.Time
	// gapReported is the end of the last trimmed range reported.
	gapReported streamID
}

// inflight is an entry read and not yet settled. fut is nil for an entry
// that needs no publish (skipped, or found stored). failed is set once its
// publish failed: the future's result was taken, and the entry must be
// published again.
type inflight struct {
	id      streamID
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
	// Leader only now: every entry added from here on is mirrored (with
	// start "new", entries added before this point are not).
	p.m.setState("leader", nil)
	for ctx.Err() == nil {
		err := p.readOnce(ctx)
		if errors.Is(err, errRewind) {
			p.rewind(ctx)
			continue
		}
		if err != nil {
			p.drain(ctx)
			return err
		}
	}
	// Stopping: collect the acknowledgements still coming so that the
	// final checkpoint covers them.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = p.settle(sctx, true)
	cancel()
	p.drain(context.Background())
	return nil
}

// start finds where to resume.
func (p *pipeline) start(ctx context.Context) error {
	m := p.m
	if mp := m.events.Conn().MaxPayload(); mp > 0 && int64(m.events.Config().MaxMsgSize) > mp {
		m.log.Warn("stream.maxMsgSize exceeds the NATS server's max_payload: larger entries are skipped as too_large",
			"max_msg_size", m.events.Config().MaxMsgSize, "max_payload", mp)
	}
	cp, ok, err := loadCheckpoint(ctx, p.kv, m.cpKey)
	if err != nil {
		return err
	}
	if ok {
		p.acked, _ = parseStreamID(cp.ID)
		age := time.Since(time.UnixMilli(cp.At))
		if age > m.events.Config().Duplicates/2 {
			// Entries acked after this checkpoint may have left the dedupe
			// window: check the first ones against the stream.
			p.verify = 2 * m.cfg.MaxInFlight
			m.log.Info("resuming from an old checkpoint; checking the overlap against the stream",
				"checkpoint", cp.ID, "age", age.Round(time.Second), "entries_checked", p.verify)
		}
		m.log.Info("ingest resuming", "firehose", m.firehose, "after", cp.ID, "written_by", cp.Holder)
	} else {
		if p.acked, err = p.startPosition(ctx); err != nil {
			return err
		}
		m.log.Info("ingest starting without a checkpoint", "firehose", m.firehose, "start", m.cfg.Start, "after", p.acked.String())
	}
	p.cursor = p.acked
	p.saved = streamID{ms: ^uint64(0)} // force the first save
	p.save(ctx, true)
	p.checkGap(ctx)
	return nil
}

// startPosition resolves Config.Start for a first run.
func (p *pipeline) startPosition(ctx context.Context) (streamID, error) {
	switch p.m.cfg.Start {
	case "all":
		return streamID{}, nil
	case "new":
		info, err := p.m.rdb.XInfoStream(ctx, p.m.firehose).Result()
		if err != nil {
			if isNoSuchKey(err) {
				return streamID{}, nil // no firehose yet: everything is new
			}
			p.m.metrics.redisErrors.Inc()
			return streamID{}, fmt.Errorf("xinfo stream %s: %w", p.m.firehose, err)
		}
		return parseStreamID(info.LastGeneratedID)
	}
	return parseStreamID(p.m.cfg.Start)
}

func isNoSuchKey(err error) bool {
	return err != nil && (errors.Is(err, redis.Nil) || err.Error() == "ERR no such key")
}

// readOnce reads one batch and publishes it.
func (p *pipeline) readOnce(ctx context.Context) error {
	m := p.m
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
	m.setState("leader", nil)
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
	channel, data, reason := parseEntry(msg.Values, int(m.events.Config().MaxMsgSize))
	if reason != "" {
		p.skip(msg.ID, reason, msg.Values)
		p.pending = append(p.pending, &inflight{id: id})
		return nil
	}
	if p.verify > 0 {
		p.verify--
		if stored, err := p.stored(ctx, channel, id); err != nil {
			return err
		} else if stored {
			m.metrics.duplicates.Inc()
			p.pending = append(p.pending, &inflight{id: id})
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
		p.pending = append(p.pending, &inflight{id: id})
		return nil
	}
	if err != nil {
		m.metrics.publishErrors.Inc()
		m.log.Warn("publish failed; rewinding to the last acknowledged entry", "redis_id", msg.ID, "channel", channel, "err", err)
		return errRewind
	}
	p.busy[channel]++
	p.pending = append(p.pending, &inflight{id: id, channel: channel, fut: fut})
	return nil
}

// stored reports whether the channel's last stored event carries a Redis
// id at or after id: per-channel order is Redis order, so the entry was
// stored already.
func (p *pipeline) stored(ctx context.Context, channel string, id streamID) (bool, error) {
	ev, err := p.m.events.Last(ctx, channel)
	if errors.Is(err, eventlog.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check %s against the stream: %w", id, err)
	}
	last, err := parseStreamID(ev.Header.Get(eventlog.RedisIDHeader))
	if err != nil {
		return false, nil // published by someone else: rely on dedupe
	}
	return !last.less(id), nil
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
	p.acked = head.id
	p.pending[0] = nil
	p.pending = p.pending[1:]
	return true, nil
}

// rewind restarts reading after the last acknowledged entry, once every
// publish in flight has settled (their results no longer matter: entries
// stored already come back as duplicates).
func (p *pipeline) rewind(ctx context.Context) {
	p.m.metrics.rewinds.Inc()
	p.drain(ctx)
	p.cursor = p.acked
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
// when forced).
func (p *pipeline) save(ctx context.Context, force bool) {
	if p.acked == p.saved || (!force && time.Since(p.savedAt) < p.m.cfg.CheckpointInterval) {
		return
	}
	cp := checkpoint{ID: p.acked.String(), At: time.Now().UnixMilli(), Holder: p.m.cfg.Instance}
	if err := saveCheckpoint(ctx, p.kv, p.m.cpKey, cp); err != nil {
		p.m.log.Warn("checkpoint not saved; will retry", "err", err)
		return
	}
	p.saved, p.savedAt = p.acked, time.Now()
	p.m.metrics.checkpointMs.Set(float64(p.acked.ms))
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
	if err := m.events.Conn().PublishMsg(msg); err == nil {
		m.metrics.deadLettered.Inc()
	}
}

// probe updates the lag gauges and checks for trimmed history.
func (p *pipeline) probe(ctx context.Context) {
	m := p.m
	info, err := m.rdb.XInfoStream(ctx, m.firehose).Result()
	if err != nil {
		if !isNoSuchKey(err) {
			m.metrics.redisErrors.Inc()
		}
		return
	}
	tip, err := parseStreamID(info.LastGeneratedID)
	if err != nil {
		return
	}
	if !p.acked.less(tip) {
		m.metrics.lagEntries.Set(0)
		m.metrics.lagSeconds.Set(0)
	} else {
		m.metrics.lagSeconds.Set(float64(tip.ms-min(p.acked.ms, tip.ms)) / 1000)
		n, err := m.rdb.XRange(ctx, m.firehose, "("+p.acked.String(), tip.String()).Result()
		if err == nil {
			m.metrics.lagEntries.Set(float64(min(len(n), 10000)))
		}
	}
	p.reportGap(info)
}

// checkGap is probe's gap check, on resume.
func (p *pipeline) checkGap(ctx context.Context) {
	info, err := p.m.rdb.XInfoStream(ctx, p.m.firehose).Result()
	if err == nil {
		p.reportGap(info)
	}
}

// reportGap logs and counts entries trimmed from the firehose before the
// mirror read them: they were never mirrored and cannot be. Each trimmed
// range is reported once.
func (p *pipeline) reportGap(info *redis.XInfoStream) {
	if p.cursor.isZero() {
		return // reading from the beginning: nothing before it was ours
	}
	m := p.m
	// An entry after the position deleted with XDEL (Redis 7 records it).
	if deleted, err := parseStreamID(info.MaxDeletedEntryID); err == nil && p.cursor.less(deleted) && p.gapReported.less(deleted) {
		p.gapReported = deleted
		m.metrics.gaps.Inc()
		m.log.Error("firehose entries after the mirror's position were deleted: these events are lost",
			"after", p.cursor.String(), "up_to", deleted.String(), "firehose", m.firehose)
		return
	}
	// Trimming (MAXLEN) removes the oldest entries: if the firehose now
	// starts after the position, what lay between is gone.
	first, err := parseStreamID(info.FirstEntry.ID)
	if err == nil && info.Length > 0 && p.cursor.less(first) && p.gapReported.less(first) {
		p.gapReported = first
		m.metrics.gaps.Inc()
		m.log.Error("firehose was trimmed past the mirror's position: the events between are lost",
			"after", p.cursor.String(), "first_entry", first.String(), "firehose", m.firehose)
	}
}
