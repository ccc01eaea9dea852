package bridge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
)

// TestRegionMirrorLag: a client comes to the edge with a last_id the
// edge's mirror does not have yet, because the link to the hub is stalled.
// The gateway waits a bounded time for the mirror; whether the mirror
// catches up within the wait or only after it, the client receives
// exactly the events after its last_id, once each and in order. A last_id
// beyond the origin's end is delivered from the node's position and
// counted.
func TestRegionMirrorLag(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	// ReplayTimeout/5 is the wait for the mirror: 600ms.
	mirrorCfg := Config{ReplayTimeout: 3 * time.Second}
	t.Run("leaf node", func(t *testing.T) {
		lt := startLeafTopology(t, Config{}, mirrorCfg)
		mirrorLag(t, lt.hubGW, lt.edgeGW, stallProxies{lt.link})
	})
	t.Run("super-cluster", func(t *testing.T) {
		sc := startSuperCluster(t, 1, 1, true)
		origin := startGatewayOn(t, sc.a[0], gatewayOptions{logCfg: eventlog.Config{
			Placement: &jetstream.Placement{Cluster: "A"}}})
		mirror := startGatewayOn(t, sc.b[0], gatewayOptions{cfg: mirrorCfg, logCfg: eventlog.Config{
			Mirror: &eventlog.Mirror{Name: "PUSHBRIDGE_B", Placement: &jetstream.Placement{Cluster: "B"}}}})
		mirrorLag(t, origin, mirror, sc.links)
	})
}

// mirrorLag runs the lag checks on a gateway reading the origin and one
// reading a mirror in another region, the link between them stallable.
func mirrorLag(t *testing.T, hub, edge *gateway, link stallProxies) {
	const ch = "lag"
	base := hub.publish(ch, `{"base":true}`)
	waitMirrorAt(t, edge, base, 10*time.Second)
	watcher := hub.dial(ch, hub.log.ID(base).String())

	// seenAtHub publishes n events at the hub while the link is stalled
	// and returns the id of the last one, as the hub's client saw it.
	seenAtHub := func(n int) string {
		t.Helper()
		var last string
		for i := 0; i < n; i++ {
			s := hub.publish(ch, fmt.Sprintf(`{"i":%d}`, i))
			last = hub.log.ID(s).String()
			if got := frameID(t, watcher.next(5*time.Second)); got != last {
				t.Fatalf("hub client got %s, want %s", got, last)
			}
		}
		return last
	}

	t.Run("mirror catches up within the wait", func(t *testing.T) {
		link.stall()
		last := seenAtHub(3)
		c := edge.dial(ch, last)
		c.expectNothing(200 * time.Millisecond) // waiting for the mirror
		next := hub.log.ID(hub.publish(ch, `{"after":1}`)).String()
		watcher.collect(1, 5*time.Second)
		resumed := time.Now()
		link.resume()
		equalIDs(t, "after the mirror caught up", c.collect(1, 10*time.Second), []string{next})
		t.Logf("served %s after the link resumed", time.Since(resumed).Round(time.Microsecond))
		c.expectNothing(100 * time.Millisecond)
		if v := metricValue(t, edge, `pushbridge_replays_total{result="ok",source="ahead"}`); v != 1 {
			t.Fatalf("ahead replays ok: %v, want 1", v)
		}
	})

	t.Run("mirror catches up after the wait", func(t *testing.T) {
		link.stall()
		last := seenAtHub(3)
		stalled := time.Now()
		c := edge.dial(ch, last)
		dialed := time.Now()
		// The wait ends with the mirror still behind: the client keeps
		// its position rather than being sent what it already has.
		line := waitLogLine(t, edge, 10*time.Second, "last_id is ahead of this node", "last_id="+last)
		if waited := time.Since(dialed); waited > edge.srv.cfg.ReplayTimeout {
			t.Fatalf("the wait for the mirror took %s, more than the replay timeout %s", waited, edge.srv.cfg.ReplayTimeout)
		}
		t.Logf("wait ended: %s", line[strings.Index(line, "msg="):])
		c.expectNothing(100 * time.Millisecond)
		next := hub.log.ID(hub.publish(ch, `{"after":2}`)).String()
		watcher.collect(1, 5*time.Second)
		link.resume()
		equalIDs(t, "after the mirror caught up", c.collect(1, 15*time.Second), []string{next})
		t.Logf("link stalled for %s", time.Since(stalled).Round(time.Millisecond))
		c.expectNothing(100 * time.Millisecond)
		if v := metricValue(t, edge, `pushbridge_replays_total{result="lagging",source="ahead"}`); v != 1 {
			t.Fatalf("ahead replays lagging: %v, want 1", v)
		}
		if v := metricValue(t, edge, `pushbridge_last_id_unusable_total{kind="ahead"}`); v != 0 {
			t.Fatalf("a lagging mirror counted %v unusable ids", v)
		}
	})

	t.Run("beyond the origin's end", func(t *testing.T) {
		head, err := hub.log.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		waitMirrorAt(t, edge, head, 10*time.Second)
		c := edge.dial(ch, hub.log.ID(head+1000).String())
		waitLogLine(t, edge, 10*time.Second, "last_id is beyond the stream's end")
		c.expectNothing(100 * time.Millisecond)
		next := hub.log.ID(hub.publish(ch, `{"after":3}`)).String()
		equalIDs(t, "from the node's position", c.collect(1, 10*time.Second), []string{next})
		if v := metricValue(t, edge, `pushbridge_last_id_unusable_total{kind="ahead"}`); v != 1 {
			t.Fatalf("unusable ahead ids: %v, want 1", v)
		}
		if v := metricValue(t, edge, `pushbridge_replays_total{result="ahead_timeout",source="ahead"}`); v != 1 {
			t.Fatalf("ahead replays timed out: %v, want 1", v)
		}
	})
}

// TestRegionLinkCut: the link between regions fails while events are in
// flight to the mirror. The mirror's gateway keeps serving its clients;
// once the link is back the mirror resumes at the right sequence and a
// live client there receives every event published meanwhile, once, in
// order.
func TestRegionLinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	t.Run("leaf node", func(t *testing.T) {
		lt := startLeafTopology(t, Config{}, Config{})
		before := leafConnID(t, lt.hub)
		linkCut(t, lt.hubGW, lt.edgeGW, stallProxies{lt.link}, func() error {
			if id := leafConnID(t, lt.hub); id == 0 || id == before {
				return fmt.Errorf("hub's leaf connection %d (before the cut %d)", id, before)
			}
			return nil
		})
	})
	t.Run("super-cluster", func(t *testing.T) {
		sc := startSuperCluster(t, 1, 1, true)
		origin := startGatewayOn(t, sc.a[0], gatewayOptions{logCfg: eventlog.Config{
			Placement: &jetstream.Placement{Cluster: "A"}}})
		mirror := startGatewayOn(t, sc.b[0], gatewayOptions{logCfg: eventlog.Config{
			Mirror: &eventlog.Mirror{Name: "PUSHBRIDGE_B", Placement: &jetstream.Placement{Cluster: "B"}}}})
		linkCut(t, origin, mirror, sc.links, nil)
	})
}

// linkCut stalls the links, publishes in the origin region, cuts the
// links (dropping what was held) and checks the mirror region's client.
// reconnected, if not nil, reports whether the link is back.
func linkCut(t *testing.T, hub, edge *gateway, links stallProxies, reconnected func() error) {
	const ch = "cut"
	first := hub.publish(ch, `{"first":true}`)
	c := edge.dial(ch, hub.log.ID(first-1).String())
	equalIDs(t, "before the cut", c.collect(1, 10*time.Second), idsOf(hub, []uint64{first}))

	links.stall()
	var want []uint64
	for i := 0; i < 5; i++ {
		want = append(want, hub.publish(ch, fmt.Sprintf(`{"during":%d}`, i)))
	}
	cut := time.Now()
	for _, l := range links {
		l.cut() // what was sent over the link is lost with it
	}
	if reconnected != nil {
		waitFor(t, 10*time.Second, "link reconnected", reconnected)
		t.Logf("link back %s after the cut", time.Since(cut).Round(time.Millisecond))
	}
	want = append(want, hub.publish(ch, `{"after":true}`))
	equalIDs(t, "after the link came back", c.collect(len(want), 30*time.Second), idsOf(hub, want))
	t.Logf("the client in the mirror's region was whole %s after the cut", time.Since(cut).Round(time.Millisecond))
	c.expectNothing(100 * time.Millisecond)
	assertSameHistory(t, hub, edge, ch)
}

// leafConnID returns the id of the hub's one leaf node connection, 0 if
// there is none.
func leafConnID(t *testing.T, hub *embedded.Server) uint64 {
	t.Helper()
	lz, err := hub.NATS().Leafz(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lz.Leafs) != 1 {
		return 0
	}
	return lz.Leafs[0].ID
}

// TestRegionEdgeStartsCutOff: an edge gateway (re)starts while its leaf
// link to the hub is stalled. It opens its existing mirror under the epoch
// recorded on it and serves: a client resuming from an id the mirror holds
// gets what the mirror has; a client holding an id only the hub has keeps
// its position. When the link is back both receive the rest exactly.
func TestRegionEdgeStartsCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	cfg := Config{ReplayTimeout: 3 * time.Second}
	lt := startLeafTopology(t, Config{}, cfg)
	hub := lt.hubGW
	const ch = "cutoff"
	var seqs []uint64
	for i := 0; i < 3; i++ {
		seqs = append(seqs, hub.publish(ch, fmt.Sprintf(`{"i":%d}`, i)))
	}
	waitMirrorAt(t, lt.edgeGW, seqs[2], 10*time.Second)
	lt.edgeGW.stop()

	lt.link.stall()
	for i := 3; i < 5; i++ {
		seqs = append(seqs, hub.publish(ch, fmt.Sprintf(`{"i":%d}`, i)))
	}
	began := time.Now()
	edge := startGatewayOn(t, lt.edge, gatewayOptions{cfg: cfg,
		logCfg: eventlog.Config{Mirror: &eventlog.Mirror{Name: edgeMirror, OriginDomain: "hub"}}})
	t.Logf("edge gateway ready %s after starting cut off", time.Since(began).Round(time.Millisecond))
	if edge.log.Epoch() != hub.log.Epoch() {
		t.Fatalf("edge epoch %d, hub %d", edge.log.Epoch(), hub.log.Epoch())
	}
	waitLogLine(t, edge, time.Second, "origin stream unreachable; serving the local mirror")

	behind := edge.dial(ch, hub.log.ID(seqs[0]).String())
	equalIDs(t, "from the mirror while cut off", behind.collect(2, 10*time.Second), idsOf(hub, seqs[1:3]))
	ahead := edge.dial(ch, hub.log.ID(seqs[4]).String())
	waitLogLine(t, edge, 10*time.Second, "last_id is ahead of this node", "last_id="+hub.log.ID(seqs[4]).String())

	lt.link.resume()
	next := hub.publish(ch, `{"after":true}`)
	equalIDs(t, "behind, after the link is back", behind.collect(3, 15*time.Second), idsOf(hub, append(seqs[3:5:5], next)))
	equalIDs(t, "ahead, after the link is back", ahead.collect(1, 15*time.Second), idsOf(hub, []uint64{next}))
	behind.expectNothing(100 * time.Millisecond)
	ahead.expectNothing(10 * time.Millisecond)
}

// TestRegionPublishDuringStall: a publish through the edge's HTTP API
// while the link to the origin is stalled fails with 503 within the
// publish timeout (it is never stored in the mirror region alone); the
// publisher's retry with the same idempotency key after the link is back
// stores the event exactly once at the origin, whichever attempt reached
// it, and every region delivers it once.
func TestRegionPublishDuringStall(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	lt := startLeafTopology(t, Config{}, Config{})
	hub, edge := lt.hubGW, lt.edgeGW
	const ch = "stalled-pub"
	atHub := hub.dial(ch, "")
	atEdge := edge.dial(ch, "")

	lt.link.stall()
	began := time.Now()
	code, _ := postWithKey(t, edge, ch, `{"job":"j1"}`, "k1")
	failedAfter := time.Since(began)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("publish through a cut-off edge: status %d, want 503", code)
	}
	lt.link.resume()
	code, id := postWithKey(t, edge, ch, `{"job":"j1"}`, "k1")
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("retry after the link is back: status %d", code)
	}
	t.Logf("failed with 503 after %s; the retry answered %d", failedAfter.Round(time.Millisecond), code)
	equalIDs(t, "hub client", atHub.collect(1, 10*time.Second), []string{id})
	equalIDs(t, "edge client", atEdge.collect(1, 10*time.Second), []string{id})
	atHub.expectNothing(200 * time.Millisecond)
	atEdge.expectNothing(10 * time.Millisecond)
	var n int
	if err := hub.log.Read(t.Context(), ch, 0, 0, func(eventlog.Event) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("origin holds %d events of %s (%v), want 1", n, ch, err)
	}
	if v := metricValue(t, edge, `pushbridge_http_publishes_total{result="unavailable"}`); v != 1 {
		t.Fatalf("unavailable publishes counted %v, want 1", v)
	}
}

// postWithKey publishes through g's HTTP API with an idempotency key and
// returns the status and the event id (empty on failure).
func postWithKey(t *testing.T, g *gateway, channel, body, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.http.URL+"/api/v1/channels/"+channel+"/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+publisherTokenTB(t, []string{"*"}))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.ID
}
