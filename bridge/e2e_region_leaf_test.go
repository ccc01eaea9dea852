package bridge

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
)

// leafTopology is a hub region holding the origin stream in JetStream
// domain "hub" and an edge server that joins it as a leaf node, runs its
// own JetStream domain "edge" and mirrors the origin across domains. The
// leaf connection runs through a proxy that can stall it.
type leafTopology struct {
	hub, edge     *embedded.Server
	link          *stallProxy
	hubGW, edgeGW *gateway
}

const edgeMirror = "PUSHBRIDGE_EDGE"

func startLeafTopology(t testing.TB, hubCfg, edgeCfg Config) *leafTopology {
	t.Helper()
	return startLeafTopologyWith(t, hubCfg, edgeCfg, nil)
}

// startLeafTopologyWith is startLeafTopology running beforeEdge between
// the start of the hub's gateway and the edge's.
func startLeafTopologyWith(t testing.TB, hubCfg, edgeCfg Config, beforeEdge func(hub *gateway)) *leafTopology {
	t.Helper()
	hubLeaf := freePort(t)
	lt := &leafTopology{}
	lt.hub = startNATS(t, embedded.Config{Name: "hub", Listen: "127.0.0.1:-1", Domain: "hub",
		LeafNode: embedded.LeafNodeConfig{Listen: loopback(hubLeaf)}})
	lt.link = startStallProxy(t, loopback(hubLeaf))
	lt.edge = startNATS(t, embedded.Config{Name: "edge", Domain: "edge",
		LeafNode: embedded.LeafNodeConfig{Remotes: []string{"nats-leaf://" + lt.link.addr()}}})
	waitFor(t, 10*time.Second, "leaf node connection", func() error {
		if n := lt.hub.NATS().NumLeafNodes(); n != 1 {
			return fmt.Errorf("hub has %d leaf nodes", n)
		}
		if n := lt.edge.NATS().NumLeafNodes(); n != 1 {
			return fmt.Errorf("edge has %d hub connections", n)
		}
		return nil
	})
	lt.hubGW = startGatewayOn(t, lt.hub, gatewayOptions{cfg: hubCfg})
	if beforeEdge != nil {
		beforeEdge(lt.hubGW)
	}
	lt.edgeGW = startGatewayOn(t, lt.edge, gatewayOptions{cfg: edgeCfg,
		logCfg: eventlog.Config{Mirror: &eventlog.Mirror{Name: edgeMirror, OriginDomain: "hub"}}})
	return lt
}

// TestRegionLeafNodeRoaming: a client moves hub → edge and edge → hub,
// each time resuming with the id of its last frame, and receives exactly
// what it missed, in order, then live events. Events are published in
// both regions; every one lands in the origin.
func TestRegionLeafNodeRoaming(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	began := time.Now()
	lt := startLeafTopology(t, Config{}, Config{})
	hub, edge := lt.hubGW, lt.edgeGW
	t.Logf("topology up in %s", time.Since(began).Round(time.Millisecond))
	if edge.log.Epoch() != hub.log.Epoch() {
		t.Fatalf("edge epoch %d, hub epoch %d", edge.log.Epoch(), hub.log.Epoch())
	}
	if edge.log.ReadStream() != edgeMirror || edge.log.Stream() != "PUSHBRIDGE" {
		t.Fatalf("edge reads %s and appends to %s", edge.log.ReadStream(), edge.log.Stream())
	}
	roamer := switchRegions(t, hub, edge, "roam")
	switchRegions(t, edge, hub, "roam", roamer...)

	// Nothing was appended to the mirror itself: the origin holds every
	// event and the mirror holds the same sequences.
	assertSameHistory(t, hub, edge, "roam")
	med, worst := measureCrossRegion(t, hub, edge, 20)
	t.Logf("published in the hub, received live on the edge: median %s, max %s", med.Round(time.Microsecond), worst.Round(time.Microsecond))
}

// switchRegions connects a client on channel to from (resuming after
// seen, if any), publishes there and in to, moves the client to to with
// the id of its last frame, and checks it receives exactly what it missed
// and then live events. It returns every id the client saw.
func switchRegions(t *testing.T, from, to *gateway, channel string, seen ...string) []string {
	t.Helper()
	last := ""
	if len(seen) > 0 {
		last = seen[len(seen)-1]
	}
	c := from.dial(channel, last)
	var want []uint64
	for i := 0; i < 3; i++ {
		want = append(want, from.publish(channel, fmt.Sprintf(`{"in":%q,"n":%d}`, from.nats.Name(), i)))
	}
	got := c.collect(3, 10*time.Second)
	equalIDs(t, "live in "+from.nats.Name(), got, idsOf(from, want))
	seen = append(seen, got...)
	_ = c.ws.Close()

	// While the client is away: events from both regions, some through
	// the HTTP publish API of the region it is moving to.
	var missed []string
	for i := 0; i < 2; i++ {
		missed = append(missed, from.log.ID(from.publish(channel, fmt.Sprintf(`{"away":%d}`, i))).String())
		missed = append(missed, to.log.ID(to.publish(channel, fmt.Sprintf(`{"away_other":%d}`, i))).String())
		missed = append(missed, postEvent(t, to, channel, fmt.Sprintf(`{"away_api":%d}`, i)))
	}
	start := time.Now()
	c2 := to.dial(channel, seen[len(seen)-1])
	got = c2.collect(len(missed), 10*time.Second)
	whole := time.Since(start)
	equalIDs(t, "resumed in "+to.nats.Name(), got, missed)
	seen = append(seen, got...)
	live := to.log.ID(from.publish(channel, `{"live":true}`)).String()
	equalIDs(t, "live after the switch", c2.collect(1, 10*time.Second), []string{live})
	seen = append(seen, live)
	c2.expectNothing(100 * time.Millisecond)
	_ = c2.ws.Close()
	replay := waitLogLine(t, to, 5*time.Second, "replay done", "last_id="+seen[len(seen)-len(missed)-2])
	t.Logf("%s → %s: %d missed events received %s after dialing; %s", from.nats.Name(), to.nats.Name(), len(missed),
		whole.Round(time.Microsecond), replay[strings.Index(replay, "source="):])
	return seen
}

// assertSameHistory checks that b's stream holds channel's events under
// the same sequences and payloads as a's.
func assertSameHistory(t *testing.T, a, b *gateway, channel string) {
	t.Helper()
	head, err := a.log.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waitMirrorAt(t, b, head, 10*time.Second)
	read := func(g *gateway) []string {
		var out []string
		if err := g.log.Read(t.Context(), channel, 0, 0, func(ev eventlog.Event) error {
			out = append(out, fmt.Sprintf("%d:%s", ev.Seq, ev.Data))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ha, hb := read(a), read(b)
	if fmt.Sprint(ha) != fmt.Sprint(hb) || len(ha) == 0 {
		t.Fatalf("%s holds %v\n%s holds %v", a.log.ReadStream(), ha, b.log.ReadStream(), hb)
	}
}

// measureCrossRegion publishes n events in from, one at a time, and
// returns the median and the largest time until a live client in to
// receives each: the mirror's lag plus the gateway's dispatch.
func measureCrossRegion(t *testing.T, from, to *gateway, n int) (median, worst time.Duration) {
	t.Helper()
	c := to.dial("probe", "")
	var took []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		id := from.log.ID(from.publish("probe", fmt.Sprintf(`{"probe":%d}`, i))).String()
		equalIDs(t, "probe", c.collect(1, 10*time.Second), []string{id})
		took = append(took, time.Since(start))
	}
	_ = c.ws.Close()
	slices.Sort(took)
	return took[len(took)/2], took[len(took)-1]
}

// TestRegionNewMirrorServesNoHistoryAsLive: a region added to an origin
// that already has history starts with an empty mirror that then copies
// the history. A client that connects there without last_id must get only
// events published after it connected, as in the origin's region, not the
// copied history as if it were live.
func TestRegionNewMirrorServesNoHistoryAsLive(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	var history []uint64
	lt := startLeafTopologyWith(t, Config{}, Config{}, func(hub *gateway) {
		for i := 0; i < 50; i++ {
			history = append(history, hub.publish("old", fmt.Sprintf(`{"old":%d}`, i)))
		}
	})
	c := lt.edgeGW.dial("old", "")
	live := lt.hubGW.publish("old", `{"new":true}`)
	got := c.collect(1, 10*time.Second)
	equalIDs(t, "first frame on the new region", got, idsOf(lt.hubGW, []uint64{live}))
	c.expectNothing(100 * time.Millisecond)
	// With last_id the history is there.
	r := lt.edgeGW.dial("old", lt.hubGW.log.ID(history[47]).String())
	equalIDs(t, "replay on the new region", r.collect(3, 10*time.Second), idsOf(lt.hubGW, []uint64{history[48], history[49], live}))
}
