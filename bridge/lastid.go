package bridge

import (
	"fmt"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// resumeKind says how a client's last_id can be resumed.
type resumeKind uint8

const (
	// resumeNone: no last_id; live delivery only (the Node server's
	// behaviour for a fresh tab).
	resumeNone resumeKind = iota
	// resumeSeq: an id of this stream's epoch; replay exactly the
	// channel's events after seq.
	resumeSeq
	// resumeEpochReset: an id of an earlier epoch (the stream was
	// recreated). The old stream's tail is gone; everything the channel
	// has in the current epoch is new to the client and is replayed.
	resumeEpochReset
	// resumeRedis: a Redis stream id handed out by the old Node server;
	// replay by time and by the Redis id each mirrored event carries.
	resumeRedis
	// resumeUnusable: malformed, or from an epoch newer than the stream's;
	// live delivery only.
	resumeUnusable
)

func (k resumeKind) String() string {
	switch k {
	case resumeNone:
		return "none"
	case resumeSeq:
		return "seq"
	case resumeEpochReset:
		return "epoch_reset"
	case resumeRedis:
		return "redis_id"
	}
	return "unusable"
}

// resumePoint is a parsed last_id.
type resumePoint struct {
	kind resumeKind
	raw  string
	// seq is the stream sequence for resumeSeq.
	seq uint64
	// redisMs and redisSeq are the parts of a Redis id for resumeRedis.
	redisMs, redisSeq uint64
	// why explains resumeUnusable.
	why string
}

// redisIDMinMs separates the two id forms: pushbridge epochs are Unix
// seconds (at most 10 digits), Redis ids start with a millisecond time (13
// digits for any date after 2001).
const redisIDMinMs = eventlog.MaxEpoch + 1

// parseLastID classifies a client's last_id against the stream's epoch. It
// never fails: whatever the client sends, live delivery continues.
func parseLastID(raw string, epoch uint64) resumePoint {
	if raw == "" {
		return resumePoint{kind: resumeNone}
	}
	a, b, err := eventlog.SplitID(raw)
	switch {
	case err != nil:
		return resumePoint{kind: resumeUnusable, raw: raw, why: "malformed"}
	case a == epoch:
		return resumePoint{kind: resumeSeq, raw: raw, seq: b}
	case a >= redisIDMinMs:
		return resumePoint{kind: resumeRedis, raw: raw, redisMs: a, redisSeq: b}
	case a < epoch:
		return resumePoint{kind: resumeEpochReset, raw: raw}
	}
	return resumePoint{kind: resumeUnusable, raw: raw, why: fmt.Sprintf("epoch %d is newer than the stream's %d", a, epoch)}
}

// redisIDAfter reports whether the Redis id "ms-seq" in s sorts after
// (ms, seq). A malformed s sorts after nothing.
func redisIDAfter(s string, ms, seq uint64) (after, ok bool) {
	a, b, err := eventlog.SplitID(s)
	if err != nil {
		return false, false
	}
	return a > ms || (a == ms && b > seq), true
}
