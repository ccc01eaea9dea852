package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded"
)

// BaselineResult is the JetStream pipeline baseline's outcome.
type BaselineResult struct {
	Channels           int            `json:"channels"`
	PayloadBytes       int            `json:"payload_bytes"`
	Published          int64          `json:"published"`
	PublishFailed      int64          `json:"publish_failed"`
	PublishedPerSecond float64        `json:"published_per_second"`
	Consumed           int64          `json:"consumed"`
	ConsumedPerSecond  float64        `json:"consumed_per_second"`
	Seconds            float64        `json:"seconds"`
	Latency            LatencySummary `json:"latency"`
	StoreDir           string         `json:"store_dir"`
}

// jsBaselineOptions configure baseline-js.
type jsBaselineOptions struct {
	duration   time.Duration
	rate       float64 // 0: as fast as acknowledgements allow
	channels   int
	pad        int
	msgID      bool
	maxPending int
	storeDir   string
	drain      time.Duration
}

// runBaselineJS measures the JetStream pipeline alone, as pushbridge runs
// it: an embedded nats-server with a file store, a stream shaped like
// pushbridge's (subjects push.>, 1000 messages kept per subject), events
// published with PublishAsync (a bounded number in flight) in-process, and
// one ordered consumer reading everything back. The sustained rate is what
// the consumer receives per second of publishing.
func runBaselineJS(ctx context.Context, o jsBaselineOptions, log *slog.Logger, progress func(string)) (*BaselineResult, error) {
	dir := o.storeDir
	if dir == "" {
		d, err := os.MkdirTemp("", "pushload-js-*")
		if err != nil {
			return nil, fmt.Errorf("store dir: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	srv, err := embedded.New(embedded.Config{Name: "pushload-baseline", StoreDir: dir, Logger: log,
		LameDuckDuration: time.Second, LameDuckGracePeriod: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	pubConn, err := srv.Connect(nats.Name("pushload-baseline-pub"))
	if err != nil {
		return nil, err
	}
	defer pubConn.Close()
	subConn, err := srv.Connect(nats.Name("pushload-baseline-sub"))
	if err != nil {
		return nil, err
	}
	defer subConn.Close()

	bk := newBook(uint32(time.Now().UnixNano()), o.channels)
	var failed atomic.Int64
	pjs, err := jetstream.New(pubConn, jetstream.WithPublishAsyncMaxPending(o.maxPending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return nil, err
	}
	sjs, err := jetstream.New(subConn)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := pjs.CreateOrUpdateStream(cctx, jetstream.StreamConfig{
		Name: "PUSHLOAD_BASELINE", Subjects: []string{"push.>"}, Storage: jetstream.FileStorage,
		MaxMsgsPerSubject: 1000, MaxMsgs: 1_000_000, MaxBytes: -1, MaxAge: 24 * time.Hour,
		Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream: %w", err)
	}
	cons, err := sjs.OrderedConsumer(cctx, stream.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	hist := NewHistogram()
	var consumed atomic.Int64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now().UnixNano()
		if f, ok := parseFrame(m.Data()); ok && f.hasTS {
			hist.Record(now - f.tsNs)
		}
		consumed.Add(1)
	}, jetstream.PullMaxMessages(5000))
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()

	pad := ""
	if o.pad > 0 {
		pad = string(make([]byte, o.pad))
		b := []byte(pad)
		for i := range b {
			b[i] = 'x'
		}
		pad = string(b)
	}
	var published int64
	var payloadBytes int
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			c := consumed.Load()
			progress(fmt.Sprintf("[baseline-js %3.0fs] consumed %d/s (%d), pending acks %d", time.Since(start).Seconds(), c-last, c, pjs.PublishAsyncPending()))
			last = c
		}
	}()
	ch := 0
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		if o.rate > 0 {
			due := int64(o.rate*now.Sub(start).Seconds()) + 1
			if published >= due {
				sleep(ctx, time.Millisecond)
				continue
			}
		}
		// Publish a slice of events between clock checks.
		for range 64 {
			n := bk.alloc(ch)
			data := appendPayload(make([]byte, 0, 256+o.pad), bk.names[ch], n, time.Now().UnixNano(), pad)
			payloadBytes = len(data)
			var opts []jetstream.PublishOpt
			if o.msgID {
				opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("%s-%d", bk.names[ch], n)))
			}
			if _, err := pjs.PublishAsync("push."+bk.names[ch], data, opts...); err != nil {
				failed.Add(1)
			} else {
				published++
			}
			ch = (ch + 1) % o.channels
		}
	}
	pubSecs := time.Since(start).Seconds()
	consumedAtEnd := consumed.Load()
	// Let the consumer catch up, bounded.
	dctx, dcancel := context.WithTimeout(ctx, o.drain)
	defer dcancel()
	select {
	case <-pjs.PublishAsyncComplete():
	case <-dctx.Done():
	}
	for consumed.Load() < published-failed.Load() && dctx.Err() == nil {
		sleep(dctx, 5*time.Millisecond)
	}
	stopProgress()
	wg.Wait()
	res := &BaselineResult{Channels: o.channels, PayloadBytes: payloadBytes, Published: published, PublishFailed: failed.Load(),
		PublishedPerSecond: float64(published) / pubSecs, Consumed: consumed.Load(),
		ConsumedPerSecond: float64(consumedAtEnd) / pubSecs, Seconds: pubSecs, Latency: hist.Summary(), StoreDir: dir}
	return res, nil
}
