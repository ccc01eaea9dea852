package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// kvKey makes a NATS KV key from a Redis key: KV keys allow only
// [-/_=.a-zA-Z0-9].
func kvKey(prefix, redisKey string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range redisKey {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// checkpoint is the mirror's durable position: every firehose entry up to
// and including ID has been stored in JetStream (or skipped as bad).
type checkpoint struct {
	ID string `json:"id"`
	// At is when it was written (Unix ms). A mirror writes the checkpoint
	// only when its position moved, so At is also when that position was
	// reached; it is reported, not relied on (see overlapCheck).
	At     int64  `json:"at"`
	Holder string `json:"holder"`
	// Ord is the entry's ordinal in the firehose (Redis 7 entries-added
	// numbering), when known: it tells how many entries a trim removed.
	Ord *int64 `json:"ord,omitempty"`
}

// ord returns the checkpoint's ordinal, or -1 when it is not known.
func (cp checkpoint) ord() int64 {
	if cp.Ord == nil || *cp.Ord < 0 {
		return -1
	}
	return *cp.Ord
}

// loadCheckpoint reads the checkpoint and its KV revision (the revision
// the next write must name).
func loadCheckpoint(ctx context.Context, kv jetstream.KeyValue, key string) (checkpoint, uint64, bool, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return checkpoint{}, 0, false, nil
	}
	if err != nil {
		return checkpoint{}, 0, false, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return checkpoint{}, 0, false, fmt.Errorf("checkpoint %s is corrupt: %w", key, err)
	}
	if _, err := parseStreamID(cp.ID); err != nil {
		return checkpoint{}, 0, false, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	return cp, e.Revision(), true, nil
}

// errCheckpointConflict says the checkpoint's revision is not the one the
// writer last knew: another mirror wrote it.
var errCheckpointConflict = errors.New("checkpoint written by another mirror")

// writeCheckpoint writes cp by compare-and-set: it creates the key when rev
// is 0 and otherwise updates it only if its revision is still rev. It
// returns the new revision, or an error wrapping errCheckpointConflict.
func writeCheckpoint(ctx context.Context, kv jetstream.KeyValue, key string, cp checkpoint, rev uint64) (uint64, error) {
	b, _ := json.Marshal(cp)
	var next uint64
	var err error
	if rev == 0 {
		next, err = kv.Create(ctx, key, b)
	} else {
		next, err = kv.Update(ctx, key, b, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("write checkpoint %s: %w: %w", cp.ID, errCheckpointConflict, err)
	case err != nil:
		return 0, fmt.Errorf("write checkpoint %s: %w", cp.ID, err)
	}
	return next, nil
}

// lease is a mirror's claim to be the one publishing.
type lease struct {
	Holder  string `json:"holder"`
	Expires int64  `json:"expires"` // Unix ms
}

// errLeaseHeld says another mirror holds the lease.
var errLeaseHeld = errors.New("lease held by another mirror")

// acquireLease takes the lease if it is free, expired or already ours, by
// compare-and-set on its revision. It returns the new revision.
func acquireLease(ctx context.Context, kv jetstream.KeyValue, key, holder string, ttl time.Duration) (uint64, string, error) {
	val, _ := json.Marshal(lease{Holder: holder, Expires: time.Now().Add(ttl).UnixMilli()})
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err := kv.Create(ctx, key, val)
		if err != nil {
			return 0, "", fmt.Errorf("%w (create raced: %w)", errLeaseHeld, err)
		}
		return rev, "", nil
	case err != nil:
		return 0, "", fmt.Errorf("read lease: %w", err)
	}
	var cur lease
	if len(e.Value()) > 0 {
		_ = json.Unmarshal(e.Value(), &cur)
	}
	if cur.Holder != holder && cur.Holder != "" && time.Now().UnixMilli() < cur.Expires {
		return 0, cur.Holder, errLeaseHeld
	}
	rev, err := kv.Update(ctx, key, val, e.Revision())
	if err != nil {
		return 0, cur.Holder, fmt.Errorf("%w (update raced: %w)", errLeaseHeld, err)
	}
	return rev, cur.Holder, nil
}

// renewLease extends a lease we hold; it fails if anyone else wrote it.
func renewLease(ctx context.Context, kv jetstream.KeyValue, key, holder string, ttl time.Duration, rev uint64) (uint64, error) {
	val, _ := json.Marshal(lease{Holder: holder, Expires: time.Now().Add(ttl).UnixMilli()})
	return kv.Update(ctx, key, val, rev)
}

// releaseLease gives the lease up so that a standby takes over at once.
func releaseLease(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) {
	val, _ := json.Marshal(lease{})
	_, _ = kv.Update(ctx, key, val, rev)
}
