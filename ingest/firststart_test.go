package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// createRaceHook makes another mirror create the checkpoint while this one
// resolves its start position, between its checkpoint read (not found) and
// its create: the moment two mirrors starting at once can interleave.
type createRaceHook struct {
	once sync.Once
	fire func()
}

func (h *createRaceHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *createRaceHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xinfo" {
			h.once.Do(h.fire)
		}
		return next(ctx, cmd)
	}
}

func (h *createRaceHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestFirstStartLosingTheCreate: a first start whose checkpoint create
// loses to another mirror's must not write its own start position ("new":
// the tip) over the other's checkpoint; the next term resumes from the
// other's, so the entries between the two are mirrored, once.
func TestFirstStartLosingTheCreate(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	w := newWritten()
	xadd(t, r.rdb, w, 3, 20, 0) // after the other mirror's start, before this one's
	hook := &createRaceHook{fire: func() {
		putCheckpoint(t, ingestKV(t, r.nc), checkpoint{ID: "0-0", At: time.Now().UnixMilli(), Holder: "other"})
	}}
	run := startMirrorWith(t, Config{}, r.redis.Addr(), r.events, r.logs, func(m *Mirror) {
		c := redis.NewClient(&redis.Options{Addr: r.redis.Addr(), Protocol: 2})
		c.AddHook(hook)
		t.Cleanup(func() { _ = c.Close() })
		m.rdb = c
	})
	run.waitState(t, "leader", 20*time.Second)
	xadd(t, r.rdb, w, 3, 10, 20)
	waitStored(t, r.events, 30, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
}
