package ingest

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// lagCap bounds the lag gauge, and the entries one lag probe reads.
const lagCap = 10000

// Ordinals. Redis 7 counts the entries ever added to a stream
// (entries-added in XINFO STREAM). The mirror numbers the entries it reads
// the same way: the entry added n-th has ordinal n. It learns one ordinal
// from Redis (the position of start "all" or "new", or the tip when it is
// caught up), counts on from there as it reads, and keeps the checkpoint's
// ordinal in the checkpoint. When the firehose is trimmed past the
// position, entries-added minus the length is the ordinal just before the
// first entry left, so the difference is exactly the number of entries
// lost: zero when only the checkpoint entry itself (read and mirrored
// before) was trimmed.

// streamInfo is what the mirror uses of XINFO STREAM.
type streamInfo struct {
	length   int64
	last     streamID // last generated id
	first    streamID
	hasFirst bool
	// redis7: added (entries-added) and maxDeleted (the largest id
	// deleted with XDEL, 0-0 if none) are known.
	redis7     bool
	added      int64
	maxDeleted streamID
}

func parseStreamInfo(info *redis.XInfoStream) streamInfo {
	st := streamInfo{length: info.Length}
	st.last, _ = parseStreamID(info.LastGeneratedID)
	if id, err := parseStreamID(info.FirstEntry.ID); err == nil && info.Length > 0 {
		st.first, st.hasFirst = id, true
	}
	// Redis 7 always reports max-deleted-entry-id (0-0 at least); before,
	// neither it nor entries-added exist.
	if id, err := parseStreamID(info.MaxDeletedEntryID); err == nil {
		st.redis7, st.added, st.maxDeleted = true, info.EntriesAdded, id
	}
	return st
}

// ordBeforeFirst is the ordinal just before the first entry held, or -1
// when it cannot be told (before Redis 7, or entries inside the stream were
// deleted with XDEL so that the length undercounts).
func (s streamInfo) ordBeforeFirst() int64 {
	if !s.redis7 || (s.hasFirst && !s.maxDeleted.less(s.first)) {
		return -1
	}
	return s.added - s.length
}

// ordOfLast is the ordinal of the last generated entry, or -1.
func (s streamInfo) ordOfLast() int64 {
	if !s.redis7 {
		return -1
	}
	return s.added
}

// probe updates the lag gauges and checks for trimmed history.
func (p *pipeline) probe(ctx context.Context) {
	m := p.m
	info, err := m.rdb.XInfoStream(ctx, m.firehose).Result()
	if err != nil {
		if isNoSuchKey(err) {
			m.metrics.lagEntries.Set(0)
			m.metrics.lagSeconds.Set(0)
		} else {
			m.metrics.redisErrors.Inc()
		}
		return
	}
	st := parseStreamInfo(info)
	if st.redis7 && len(p.pending) == 0 && p.acked == st.last && p.cursor == st.last {
		// Everything up to the tip is settled: the tip's ordinal is
		// entries-added.
		p.cursorOrd, p.ackedOrd = st.added, st.added
	}
	if !p.acked.less(st.last) {
		m.metrics.lagEntries.Set(0)
		m.metrics.lagSeconds.Set(0)
	} else {
		m.metrics.lagSeconds.Set(float64(st.last.ms-min(p.acked.ms, st.last.ms)) / 1000)
		n := int64(-1)
		if st.redis7 && p.ackedOrd >= 0 && !p.acked.less(st.maxDeleted) && st.added >= p.ackedOrd {
			n = st.added - p.ackedOrd // no read needed
		} else if msgs, err := m.rdb.XRangeN(ctx, m.firehose, "("+p.acked.String(), st.last.String(), lagCap).Result(); err == nil {
			n = int64(len(msgs))
		} else {
			m.metrics.redisErrors.Inc()
		}
		if n >= 0 {
			m.metrics.lagEntries.Set(float64(min(n, lagCap)))
		}
	}
	// Entries between acked and cursor were read already: only what comes
	// after the cursor can be lost to trimming now. (A rewind reads from
	// acked again, and checks from there: checkGap.)
	p.reportGap(st, p.cursor, &p.cursorOrd)
}

// checkGap checks for trimmed history before reading from the cursor: on
// resuming, and after a rewind (when the cursor is back at acked).
func (p *pipeline) checkGap(ctx context.Context) {
	info, err := p.m.rdb.XInfoStream(ctx, p.m.firehose).Result()
	if err == nil {
		p.reportGap(parseStreamInfo(info), p.cursor, &p.cursorOrd)
	}
}

// reportGap logs and counts entries removed from the firehose after pos
// before the mirror read them: they were never mirrored and cannot be.
// Each lost range is reported once. ord is the ordinal of pos (-1 if
// unknown); it is corrected to follow the entries that remain.
func (p *pipeline) reportGap(st streamInfo, pos streamID, ord *int64) {
	m := p.m
	// Entries after the position deleted with XDEL (Redis 7 records the
	// largest deleted id).
	if st.redis7 && pos.less(st.maxDeleted) && p.gapReported.less(st.maxDeleted) {
		p.gapReported = st.maxDeleted
		*ord = -1 // the entries read no longer follow the ordinals
		m.metrics.gaps.Inc()
		m.log.Error("firehose entries after the mirror's position were deleted: these events are lost",
			"after", pos.String(), "up_to", st.maxDeleted.String(), "firehose", m.firehose)
		return
	}
	if !st.hasFirst {
		// Empty: trimmed to nothing after the entries the position counts?
		if st.redis7 && *ord >= 0 && st.added > *ord && p.gapReported.less(st.last) {
			p.gapReported = st.last
			m.metrics.gaps.Inc()
			m.log.Error("firehose was trimmed past the mirror's position: the events between are lost",
				"after", pos.String(), "up_to", st.last.String(), "lost", st.added-*ord, "firehose", m.firehose)
			*ord = st.added
		}
		return
	}
	// Trimming (MAXLEN) removes the oldest entries: if the firehose now
	// starts after the position, what lay between is gone.
	if !pos.less(st.first) || !p.gapReported.less(st.first) {
		return
	}
	if pos.isZero() && *ord < 0 {
		return // reading from the beginning: whatever the firehose holds
	}
	before := st.ordBeforeFirst()
	switch {
	case *ord >= 0 && before >= 0 && before == *ord:
		// Only entries already read (the checkpoint entry itself) were
		// trimmed: nothing is lost.
		return
	case *ord >= 0 && before >= 0 && before < *ord:
		// Fewer entries were ever added than the position counts: the
		// firehose was deleted and written anew (a Redis without
		// persistence restarted). What it held after the position and the
		// mirror had not read cannot be told.
		p.gapReported = st.first
		m.log.Warn("the firehose was recreated: entries after the mirror's position that it had not read may be lost",
			"after", pos.String(), "first_entry", st.first.String(), "firehose", m.firehose)
	case *ord >= 0 && before >= 0:
		p.gapReported = st.first
		m.metrics.gaps.Inc()
		m.log.Error("firehose was trimmed past the mirror's position: the events between are lost",
			"after", pos.String(), "first_entry", st.first.String(), "lost", before-*ord, "firehose", m.firehose)
	default:
		p.gapReported = st.first
		m.metrics.gaps.Inc()
		m.log.Error("firehose was trimmed past the mirror's position: the events between are lost",
			"after", pos.String(), "first_entry", st.first.String(), "lost", "unknown", "firehose", m.firehose)
	}
	*ord = before
}
