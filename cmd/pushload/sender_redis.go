package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// redisSender publishes the way Superset's Flask side does
// (AsyncQueryManager.update_job): for each event two XADDs, in this order,
//
//	XADD <prefix><channel> MAXLEN ~ 1000 * data <json>
//	XADD <prefix>full      MAXLEN ~ 1000000 * data <json>
//
// A worker sends the queued events of its channels in one pipeline (both
// commands of each event, in order) instead of one round trip per command;
// Redis sees the same commands in the same order.
type redisSender struct {
	rdb          *redis.Client
	prefix       string
	names        []string
	channelLimit int64
	fullLimit    int64
}

func newRedisSender(addr, prefix string, workers int, names []string) *redisSender {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: workers + 2, Protocol: 2, DisableIdentity: true})
	return &redisSender{rdb: rdb, prefix: prefix, names: names, channelLimit: 1000, fullLimit: 1_000_000}
}

// ping checks that Redis answers.
func (s *redisSender) ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

func (s *redisSender) maxBatch() int { return 64 }

func (s *redisSender) send(ctx context.Context, evs []pubEvent, build func([]byte, pubEvent) []byte, fail func(pubEvent, error)) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, 0, 2*len(evs))
	for _, ev := range evs {
		data := string(build(make([]byte, 0, 256), ev))
		cmds = append(cmds,
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.prefix + s.names[ev.ch], MaxLen: s.channelLimit, Approx: true, ID: "*", Values: []any{"data", data}}),
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.prefix + "full", MaxLen: s.fullLimit, Approx: true, ID: "*", Values: []any{"data", data}}))
	}
	_, _ = pipe.Exec(ctx)
	for i, ev := range evs {
		// The event reaches a Superset-compatible server only through the
		// firehose; a failed channel XADD matters only for replay.
		if err := cmds[2*i+1].Err(); err != nil {
			fail(ev, fmt.Errorf("xadd %sfull: %w", s.prefix, err))
		}
	}
}

func (s *redisSender) flush(context.Context) error { return nil }

func (s *redisSender) close() { _ = s.rdb.Close() }
