package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsSender publishes through the NATS subject contract: the event payload
// on subject "<prefix>.<channel>", with JetStream PublishAsync so that each
// event is acknowledged by the stream (a bounded number in flight).
type natsSender struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
	msgID  bool
	opts   []jetstream.PublishOpt
}

func newNATSSender(url, prefix string, msgID bool, bk *book) (*natsSender, error) {
	nc, err := nats.Connect(url, nats.Name("pushload"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	index := make(map[string]int, len(bk.names))
	for i, n := range bk.names {
		index[n] = i
	}
	onErr := func(_ jetstream.JetStream, m *nats.Msg, err error) {
		ch, ok := index[strings.TrimPrefix(m.Subject, prefix+".")]
		f, fok := parseFrame(m.Data)
		if ok && fok && f.hasN {
			bk.fail(ch, f.n, err)
		}
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncErrHandler(onErr),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &natsSender{nc: nc, js: js, prefix: prefix, msgID: msgID,
		opts: []jetstream.PublishOpt{jetstream.WithStallWait(10 * time.Second)}}, nil
}

func (s *natsSender) maxBatch() int { return 256 }

func (s *natsSender) send(_ context.Context, evs []pubEvent, build func([]byte, pubEvent) []byte, fail func(pubEvent, error)) {
	for _, ev := range evs {
		// The message keeps its data until acknowledged (for retries), so
		// each event gets its own buffer.
		data := build(make([]byte, 0, 256), ev)
		f, _ := parseFrame(data)
		opts := s.opts
		if s.msgID {
			opts = append(opts[:len(opts):len(opts)], jetstream.WithMsgID(fmt.Sprintf("pushload-%s-%d", f.channel, ev.n)))
		}
		if _, err := s.js.PublishAsync(s.prefix+"."+string(f.channel), data, opts...); err != nil {
			fail(ev, err)
		}
	}
}

func (s *natsSender) flush(ctx context.Context) error {
	select {
	case <-s.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d nats publishes not acknowledged: %w", s.js.PublishAsyncPending(), ctx.Err())
	}
}

func (s *natsSender) close() { s.nc.Close() }
