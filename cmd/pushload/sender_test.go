package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// publishAll runs a publisher over snd for events events spread over the
// book's channels and waits until they are published.
func publishAll(t *testing.T, snd sender, bk *book, workers, events int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := newPublisher("test", snd, bk, workers, "")
	p.run(ctx)
	for i := range events {
		if _, err := p.publish(ctx, i%len(bk.names)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := p.finish(ctx); err != nil {
		t.Fatalf("finish: %v", err)
	}
	p.close()
	if bk.failed.Load() != 0 {
		t.Fatalf("%d publishes failed: %v", bk.failed.Load(), bk.errors())
	}
}

func TestNATSSenderPublishesOnTheSubjectContract(t *testing.T) {
	srv := embeddedtest.Start(t, embeddedtest.Options{TCP: true})
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"push.>"}})
	if err != nil {
		t.Fatal(err)
	}
	bk := newBook(1, 3)
	snd, err := newNATSSender(srv.ClientURL(), "push", true, bk)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, snd, bk, 1, 9)
	for ch, name := range bk.names {
		var ns []int64
		for seq := uint64(1); seq <= 9; seq++ {
			m, err := stream.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != "push."+name {
				continue
			}
			f, ok := parseFrame(m.Data)
			if !ok || string(f.channel) != name || !f.hasTS {
				t.Fatalf("channel %d: bad payload %s", ch, m.Data)
			}
			if m.Header.Get("Nats-Msg-Id") == "" {
				t.Fatalf("no Nats-Msg-Id with --msg-id")
			}
			ns = append(ns, f.n)
		}
		if !slices.Equal(ns, []int64{1, 2, 3}) {
			t.Fatalf("channel %d: n = %v, want [1 2 3] in order", ch, ns)
		}
	}
}

// startRedis starts a real redis-server on a free loopback port (skipping
// loudly without one, failing under CI=true) and returns its address.
func startRedis(t *testing.T) string { return redistest.Start(t).Addr() }

func TestRedisSenderXAddsLikeFlask(t *testing.T) {
	addr := startRedis(t)
	bk := newBook(2, 2)
	snd := newRedisSender(addr, "async-events-", 2, bk.names)
	publishAll(t, snd, bk, 2, 6)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	full, err := rdb.XRange(ctx, "async-events-full", "-", "+").Result()
	if err != nil || len(full) != 6 {
		t.Fatalf("firehose: %d entries, %v; want 6", len(full), err)
	}
	perCh := map[string][]int64{}
	for _, e := range full {
		data, _ := e.Values["data"].(string)
		if len(e.Values) != 1 || data == "" {
			t.Fatalf("entry %v: want one field, data", e.Values)
		}
		f, ok := parseFrame([]byte(data))
		if !ok {
			t.Fatalf("bad data %q", data)
		}
		perCh[string(f.channel)] = append(perCh[string(f.channel)], f.n)
	}
	for _, name := range bk.names {
		if !slices.Equal(perCh[name], []int64{1, 2, 3}) {
			t.Fatalf("firehose order for %s: %v", name, perCh[name])
		}
		own, err := rdb.XRange(ctx, "async-events-"+name, "-", "+").Result()
		if err != nil || len(own) != 3 {
			t.Fatalf("channel stream %s: %d entries, %v; want 3", name, len(own), err)
		}
	}
}
