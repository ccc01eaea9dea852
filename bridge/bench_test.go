package bridge

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// A Superset-shaped event payload (about 230 bytes).
const benchPayload = `{"channel_id": "6494e437-0b2a-4c8c-9d7e-2f1f5c3b6a11", "job_id": "cdd46cd0-3a4b-4f7e-8d2e-0c9b8a7f6e5d", "user_id": 1, "status": "done", "errors": [], "result_url": "/api/v1/chart/data/qc-dc2b0d2a8f0e4c7a"}`

func BenchmarkEncodeEvent(b *testing.B) {
	payload := []byte(benchPayload)
	var f frameEncoder
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := f.encode(eventlog.ID{Epoch: 1795388654, Seq: uint64(i)}, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyToken(b *testing.B) {
	cfg := Config{JWTSecret: testSecret}
	cfg.setDefaults()
	auth, _ := newAuthenticator(&cfg)
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.Header.Set("Cookie", "async-token="+token(b, "6494e437-0b2a-4c8c-9d7e-2f1f5c3b6a11", jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "sub": "1"}))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, ref := auth.channel(r); ref != nil {
			b.Fatal(ref)
		}
	}
}

// BenchmarkDispatch measures the in-process fan-out of one event to the
// sockets of its channel (queueing only, no socket writes): the per-event
// cost the dispatcher pays besides writing.
func BenchmarkDispatch(b *testing.B) {
	for _, perChannel := range []int{1, 2, 10} {
		b.Run(fmt.Sprintf("sockets=%d", perChannel), func(b *testing.B) {
			srv := &Server{cfg: Config{MaxSocketBufferBytes: 1 << 30}, hub: newHub(64<<20, 1000), epoch: 1795388654}
			srv.metrics = newMetrics(promRegistry(), nil, func() float64 { return float64(srv.hub.channels.Load()) })
			const channels = 1000
			names := make([]string, channels)
			for i := range names {
				names[i] = fmt.Sprintf("ch-%d", i)
				sh := srv.hub.shardOf(names[i])
				ch := srv.hub.getLocked(sh, names[i])
				for k := 0; k < perChannel; k++ {
					ch.conns = append(ch.conns, &conn{srv: srv, channel: names[i], state: stateLive, writing: true})
				}
			}
			d := &dispatcher{srv: srv}
			payload := []byte(benchPayload)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.handle(eventlog.Event{Channel: names[i%channels], Seq: uint64(i + 1), Data: payload})
				if i%256 == 0 {
					// Keep queues from growing without bound: drop them as
					// a writer would.
					for _, name := range names[:min(channels, 256)] {
						sh := srv.hub.shardOf(name)
						for _, c := range sh.channels[name].conns {
							c.queue, c.queued = c.queue[:0], 0
						}
					}
					srv.hub.ringEvict()
				}
			}
			b.ReportMetric(float64(b.N*perChannel)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkReplay measures a reconnect 100 events behind, served from the
// ring and from JetStream (batch direct get), including the socket write.
func BenchmarkReplay(b *testing.B) {
	for _, src := range []string{"ring", "jetstream"} {
		b.Run(src, func(b *testing.B) {
			o := gatewayOptions{}
			if src == "jetstream" {
				o.cfg.RingBytes = 1
			}
			g := startGateway(b, o)
			ctx := context.Background()
			var first uint64
			for i := 0; i < 101; i++ {
				res, err := g.log.Append(ctx, "replay", []byte(benchPayload), eventlog.AppendOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					first = res.Seq
				}
			}
			last := g.log.ID(first).String()
			hdr := cookieHeader("async-token", token(b, "replay", nil))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ws, _, err := websocket.DefaultDialer.Dial(g.wsURL("last_id="+last), hdr)
				if err != nil {
					b.Fatal(err)
				}
				for k := 0; k < 100; k++ {
					if _, _, err := ws.ReadMessage(); err != nil {
						b.Fatal(err)
					}
				}
				ws.Close()
			}
		})
	}
}

// BenchmarkFanout runs the whole path: JetStream publish → the live
// consumer → dispatch → socket writes → real WebSocket clients over
// loopback. It reports events/s and deliveries/s for a Superset-shaped
// load (two sockets per channel).
func BenchmarkFanout(b *testing.B) {
	const channels, perChannel = 250, 2
	g := startGateway(b, gatewayOptions{})
	var received atomic.Int64
	hdrs := make([]string, channels)
	for i := range hdrs {
		hdrs[i] = fmt.Sprintf("fan-%d", i)
		for k := 0; k < perChannel; k++ {
			ws, _, err := websocket.DefaultDialer.Dial(g.wsURL(""), cookieHeader("async-token", token(b, hdrs[i], nil)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ws.Close() })
			go func() {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						return
					}
					received.Add(1)
				}
			}()
		}
	}
	js, _ := jetstream.New(g.log.Conn(), jetstream.WithPublishAsyncMaxPending(4096))
	payload := []byte(benchPayload)
	b.ResetTimer()
	start := time.Now()
	base := received.Load()
	for i := 0; i < b.N; i++ {
		if _, err := js.PublishAsync(g.log.Subject(hdrs[i%channels]), payload); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	want := base + int64(b.N*perChannel)
	deadline := time.Now().Add(60 * time.Second)
	for received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d deliveries", received.Load()-base, b.N*perChannel)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/elapsed, "events/s")
	b.ReportMetric(float64(b.N*perChannel)/elapsed, "deliveries/s")
}

func promRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
