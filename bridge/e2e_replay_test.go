package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// collect reads n frames and returns their ids.
func (c *client) collect(n int, timeout time.Duration) []string {
	c.t.Helper()
	ids := make([]string, 0, n)
	for len(ids) < n {
		ids = append(ids, frameID(c.t, c.next(timeout)))
	}
	return ids
}

func idsOf(g *gateway, seqs []uint64) []string {
	out := make([]string, len(seqs))
	for i, s := range seqs {
		out[i] = g.log.ID(s).String()
	}
	return out
}

func equalIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d\n got %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: event %d is %s, want %s\n got %v\nwant %v", what, i, got[i], want[i], got, want)
		}
	}
}

// TestReplayExact: a client that reconnects with the id of its last frame
// receives exactly what it missed, and only that socket receives it.
func TestReplayExact(t *testing.T) {
	for name, o := range map[string]gatewayOptions{
		"ring":      {},
		"jetstream": {cfg: Config{RingBytes: 1}}, // the ring keeps nothing: replay reads JetStream
		"goroutine": {cfg: Config{DisableNetpoll: true}},
	} {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, o)
			tab1 := g.dial("ch", "")
			var seqs []uint64
			for i := 0; i < 5; i++ {
				seqs = append(seqs, g.publish("ch", fmt.Sprintf(`{"n":%d}`, i)))
				g.publish("other", `{"noise":true}`)
			}
			equalIDs(t, "first socket", tab1.collect(5, 5*time.Second), idsOf(g, seqs))
			last := g.log.ID(seqs[2]).String()
			tab2 := g.dial("ch", last) // reconnects having seen up to the third
			equalIDs(t, "replay", tab2.collect(2, 5*time.Second), idsOf(g, seqs[3:]))
			tab1.expectNothing(100 * time.Millisecond) // replay went to tab2 only
			more := g.publish("ch", `{"n":5}`)
			equalIDs(t, "live after replay", tab2.collect(1, 5*time.Second), idsOf(g, []uint64{more}))
			equalIDs(t, "live on first", tab1.collect(1, 5*time.Second), idsOf(g, []uint64{more}))
			tab2.expectNothing(50 * time.Millisecond)
			src := map[string]string{"ring": "ring", "jetstream": "jetstream", "goroutine": "ring"}[name]
			if v := metricValue(t, g, fmt.Sprintf(`pushbridge_replays_total{result="ok",source=%q}`, src)); v != 1 {
				t.Fatalf("replays from %s: %v, want 1", src, v)
			}
		})
	}
}

// TestReplayLastIDForms covers last_id values that cannot be replayed
// exactly: they never fail the connection.
func TestReplayLastIDForms(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{ReplayTimeout: time.Second}})
	s1 := g.publish("f", `{"n":1}`)
	s2 := g.publish("f", `{"n":2}`)
	epoch := g.log.Epoch()

	t.Run("malformed", func(t *testing.T) {
		c := g.dial("f", "not-an-id")
		c.expectNothing(100 * time.Millisecond)
		s := g.publish("f", `{"n":"live"}`)
		equalIDs(t, "live", c.collect(1, 5*time.Second), idsOf(g, []uint64{s}))
		g.waitLog(2*time.Second, "ignoring unusable last_id", "why=malformed")
	})
	t.Run("earlier epoch replays the channel", func(t *testing.T) {
		c := g.dial("f", fmt.Sprintf("%d-5", epoch-100))
		got := c.collect(3, 5*time.Second)
		if got[0] != g.log.ID(s1).String() || got[1] != g.log.ID(s2).String() {
			t.Fatalf("got %v", got)
		}
		g.waitLog(2*time.Second, "earlier stream epoch")
	})
	t.Run("newer epoch is live only", func(t *testing.T) {
		c := g.dial("f", fmt.Sprintf("%d-1", epoch+100))
		c.expectNothing(100 * time.Millisecond)
		s := g.publish("f", `{"n":"live2"}`)
		equalIDs(t, "live", c.collect(1, 5*time.Second), idsOf(g, []uint64{s}))
	})
	t.Run("ahead of the stream", func(t *testing.T) {
		c := g.dial("f", fmt.Sprintf("%d-999999", epoch))
		// After the bounded wait the socket is delivered from the node's
		// position: nothing old, then live events.
		g.waitLog(5*time.Second, "last_id is beyond the stream's end")
		s := g.publish("f", `{"n":"after"}`)
		equalIDs(t, "live", c.collect(1, 5*time.Second), idsOf(g, []uint64{s}))
	})
	t.Run("zero sequence replays everything", func(t *testing.T) {
		c := g.dial("f", fmt.Sprintf("%d-0", epoch))
		got := c.collect(2, 5*time.Second)
		equalIDs(t, "all", got[:2], idsOf(g, []uint64{s1, s2}))
	})
}

// TestReplayFromRedisID resumes a client that still holds an id handed out
// by the old Node server: events mirrored from Redis carry their Redis id.
func TestReplayFromRedisID(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	base := time.Now().UnixMilli()
	appendRedis := func(redisID, payload string) uint64 {
		res, err := g.log.Append(context.Background(), "r", []byte(payload), eventlog.AppendOptions{
			MsgID: "async-events-full:" + redisID, Header: nats.Header{eventlog.RedisIDHeader: []string{redisID}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res.Seq
	}
	id := func(ms int64, seq int) string { return strconv.FormatInt(ms, 10) + "-" + strconv.Itoa(seq) }
	appendRedis(id(base, 0), `{"n":0}`)
	appendRedis(id(base, 1), `{"n":1}`)
	s2 := appendRedis(id(base, 2), `{"n":2}`) // same millisecond: the Node server's replay loses this one
	s3 := appendRedis(id(base+5, 0), `{"n":3}`)
	c := g.dial("r", id(base, 1))
	equalIDs(t, "replay by redis id", c.collect(2, 5*time.Second), idsOf(g, []uint64{s2, s3}))
	c.expectNothing(100 * time.Millisecond)
}

// TestReplayTrimmedHistory: when the channel's history after last_id was
// trimmed, the client gets what is left and the loss is logged and counted.
func TestReplayTrimmedHistory(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{RingBytes: 1}, logCfg: eventlog.Config{MaxMsgsPerChannel: 3}})
	var seqs []uint64
	for i := 0; i < 6; i++ {
		seqs = append(seqs, g.publish("t", fmt.Sprintf(`{"n":%d}`, i)))
	}
	c := g.dial("t", g.log.ID(seqs[0]).String())
	equalIDs(t, "what is left", c.collect(3, 5*time.Second), idsOf(g, seqs[3:]))
	g.waitLog(2*time.Second, "history after last_id was trimmed")
	if v := metricValue(t, g, "pushbridge_replay_history_trimmed_total"); v != 1 {
		t.Fatalf("trimmed %v", v)
	}
	// A client whose last event is still stored is not reported.
	c2 := g.dial("t", g.log.ID(seqs[4]).String())
	equalIDs(t, "tail", c2.collect(1, 5*time.Second), idsOf(g, seqs[5:]))
	if v := metricValue(t, g, "pushbridge_replay_history_trimmed_total"); v != 1 {
		t.Fatalf("trimmed %v after an exact replay", v)
	}
}

// TestReplayTrimmedAcrossJetStreamAndRing: a replay served partly from
// JetStream and partly from the ring is reported as trimmed when the
// channel's limit removed events after last_id: the check counts all the
// client received, not only the JetStream part.
func TestReplayTrimmedAcrossJetStreamAndRing(t *testing.T) {
	// The ring keeps the channel's newest 2 events, the stream its newest 3.
	g := startGateway(t, gatewayOptions{cfg: Config{RingPerChannel: 2}, logCfg: eventlog.Config{MaxMsgsPerChannel: 3}})
	g.publish("other", `{"keeps":"the stream's start before last_id"}`)
	var seqs []uint64
	for i := 0; i < 6; i++ {
		seqs = append(seqs, g.publish("t", fmt.Sprintf(`{"n":%d}`, i)))
	}
	for g.srv.hub.cursor.Load() < seqs[5] {
		<-g.srv.cursorSig.wait()
	}
	// last_id is the channel's first event: the next two were trimmed.
	c := g.dial("t", g.log.ID(seqs[0]).String())
	equalIDs(t, "what is left", c.collect(3, 5*time.Second), idsOf(g, seqs[3:]))
	g.waitLog(2*time.Second, "history after last_id was trimmed", "source=jetstream")
	if v := metricValue(t, g, "pushbridge_replay_history_trimmed_total"); v != 1 {
		t.Fatalf("trimmed %v, want 1", v)
	}
	if v := metricValue(t, g, `pushbridge_replays_total{result="trimmed",source="jetstream"}`); v != 1 {
		t.Fatalf("trimmed jetstream replays %v, want 1", v)
	}
}

// TestChurnExactlyOnce: dozens of clients drop and resume with last_id
// while events flow; every client ends with every event of its channel
// from its first on, once each, in order.
func TestChurnExactlyOnce(t *testing.T) {
	for name, o := range map[string]gatewayOptions{
		"ring":      {},
		"jetstream": {cfg: Config{RingBytes: 4 << 10}}, // most replays miss the ring
	} {
		t.Run(name, func(t *testing.T) {
			churn(t, startGateway(t, o))
		})
	}
}

func churn(t *testing.T, g *gateway) {
	const (
		channels  = 4
		clients   = 32
		published = 1500
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The publisher records each channel's sequence of ids.
	var pubMu sync.Mutex
	perChannel := make(map[string][]string)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; i < published && ctx.Err() == nil; i++ {
			ch := "churn" + strconv.Itoa(i%channels)
			res, err := g.log.Append(ctx, ch, []byte(fmt.Sprintf(`{"i":%d}`, i)), eventlog.AppendOptions{})
			if err != nil {
				t.Errorf("append: %v", err)
				return
			}
			pubMu.Lock()
			perChannel[ch] = append(perChannel[ch], g.log.ID(res.Seq).String())
			pubMu.Unlock()
		}
	}()

	type result struct {
		channel string
		got     []string
	}
	results := make(chan result, clients)
	var reconnects atomic.Int64
	for i := 0; i < clients; i++ {
		go func(i int) {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			ch := "churn" + strconv.Itoa(i%channels)
			var got []string
			last := ""
			for {
				c, _, err := g.dialRaw(cookieHeader("async-token", token(t, ch, nil)), last)
				if err != nil {
					t.Errorf("client %d: dial: %v", i, err)
					results <- result{ch, got}
					return
				}
				// Read a random number of frames, then drop the socket.
				n := 1 + rng.IntN(60)
				for k := 0; k < n; k++ {
					select {
					case f := <-c.frames:
						got = append(got, frameID(t, f))
					case <-pubDone:
						// Publishing ended: drain what is left, then stop.
						for {
							select {
							case f := <-c.frames:
								got = append(got, frameID(t, f))
								continue
							case <-time.After(300 * time.Millisecond):
							}
							break
						}
						_ = c.ws.Close()
						results <- result{ch, got}
						return
					case <-ctx.Done():
						results <- result{ch, got}
						return
					}
				}
				_ = c.ws.Close()
				reconnects.Add(1)
				if len(got) > 0 {
					last = got[len(got)-1]
				}
			}
		}(i)
	}
	for i := 0; i < clients; i++ {
		r := <-results
		if len(r.got) == 0 {
			t.Fatalf("a client of %s received nothing", r.channel)
		}
		pubMu.Lock()
		want := perChannel[r.channel]
		pubMu.Unlock()
		start := -1
		for k, id := range want {
			if id == r.got[0] {
				start = k
				break
			}
		}
		if start < 0 {
			t.Fatalf("%s: first event %s was never published", r.channel, r.got[0])
		}
		equalIDs(t, "client of "+r.channel, r.got, want[start:start+len(r.got)])
		if start+len(r.got) != len(want) {
			t.Fatalf("%s: client stopped at %d of %d events (lost the tail)", r.channel, start+len(r.got), len(want))
		}
	}
	t.Logf("%d reconnects, %d events", reconnects.Load(), published)
	if reconnects.Load() < clients {
		t.Fatalf("only %d reconnects: the test did not churn", reconnects.Load())
	}
}
