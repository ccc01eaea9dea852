package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/embedded"
)

// superCluster is two regional JetStream clusters joined by NATS
// gateways: region "A" holds the origin stream, region "B" a mirror.
type superCluster struct {
	a, b []*embedded.Server
	// links holds the proxies the gateway connections run through, when
	// asked for: stalling them partitions the regions.
	links stallProxies
}

// startSuperCluster starts sizeA nodes in cluster A and sizeB in cluster
// B, every one with a gateway to both clusters, and waits until the
// JetStream meta leader sees all of them. With proxied, each region
// reaches the other's gateways through a stallProxy (one per region).
func startSuperCluster(t testing.TB, sizeA, sizeB int, proxied bool) *superCluster {
	t.Helper()
	type node struct{ client, route, gateway int }
	ports := func(n int) []node {
		out := make([]node, n)
		for i := range out {
			out[i] = node{freePort(t), freePort(t), freePort(t)}
		}
		return out
	}
	regions := map[string][]node{"A": ports(sizeA), "B": ports(sizeB)}
	remotes := map[string][]string{}
	for name, nodes := range regions {
		for _, n := range nodes {
			remotes[name] = append(remotes[name], "nats://"+loopback(n.gateway))
		}
	}
	sc := &superCluster{}
	// remotesOf is what region's nodes dial: their own cluster directly,
	// the other through its proxy.
	remotesOf := map[string]map[string][]string{"A": remotes, "B": remotes}
	if proxied {
		toA := startStallProxy(t, loopback(regions["A"][0].gateway))
		toB := startStallProxy(t, loopback(regions["B"][0].gateway))
		sc.links = stallProxies{toA, toB}
		remotesOf["A"] = map[string][]string{"A": remotes["A"], "B": {"nats://" + toB.addr()}}
		remotesOf["B"] = map[string][]string{"A": {"nats://" + toA.addr()}, "B": remotes["B"]}
	}
	start := func(region string) []*embedded.Server {
		var routes []string
		for _, n := range regions[region] {
			routes = append(routes, "nats-route://"+loopback(n.route))
		}
		var out []*embedded.Server
		for i, n := range regions[region] {
			out = append(out, startNATS(t, embedded.Config{
				Name:    fmt.Sprintf("%s%d", region, i+1),
				Listen:  loopback(n.client),
				Cluster: embedded.ClusterConfig{Name: region, Listen: loopback(n.route), Routes: routes},
				Gateway: embedded.GatewayConfig{Name: region, Listen: loopback(n.gateway), Remotes: remotesOf[region]},
				Tags:    []string{"region:" + region},
			}))
		}
		return out
	}
	sc.a, sc.b = start("A"), start("B")
	all := append(append([]*embedded.Server{}, sc.a...), sc.b...)
	waitFor(t, 30*time.Second, "JetStream meta group spanning both regions", func() error {
		for _, s := range all {
			if s.NATS().JetStreamIsLeader() {
				if peers := s.NATS().JetStreamClusterPeers(); len(peers) != len(all) {
					return fmt.Errorf("meta leader %s sees %v", s.Name(), peers)
				}
				for _, s := range all {
					if n := s.NATS().NumOutboundGateways(); n != 1 {
						return fmt.Errorf("%s has %d outbound gateways", s.Name(), n)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("no meta leader")
	})
	return sc
}

// TestRegionSuperCluster: a client connected in region A (origin stream,
// an R3 cluster) receives events, disconnects, and resumes in region B
// (a mirror in another cluster of the super-cluster) with the id of its
// last frame: it receives exactly what it missed, published in both
// regions, then live events; and back again. Publishes from B land in the
// origin.
func TestRegionSuperCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-server topology")
	}
	began := time.Now()
	sc := startSuperCluster(t, 3, 1, false)
	t.Logf("super-cluster up in %s", time.Since(began).Round(time.Millisecond))
	gwA := startGatewayOn(t, sc.a[0], gatewayOptions{logCfg: eventlog.Config{
		Replicas: 3, Placement: &jetstream.Placement{Cluster: "A"}}})
	gwB := startGatewayOn(t, sc.b[0], gatewayOptions{logCfg: eventlog.Config{
		Mirror: &eventlog.Mirror{Name: "PUSHBRIDGE_B", Placement: &jetstream.Placement{Cluster: "B"}}}})
	t.Logf("gateways up %s after start", time.Since(began).Round(time.Millisecond))

	// The streams sit where they were placed.
	for _, c := range []struct {
		g       *gateway
		stream  string
		cluster string
		mirror  bool
	}{{gwA, "PUSHBRIDGE", "A", false}, {gwB, "PUSHBRIDGE_B", "B", true}} {
		js, err := jetstream.New(c.g.log.Conn())
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(t.Context(), c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		if info.Cluster == nil || info.Cluster.Name != c.cluster || (info.Config.Mirror != nil) != c.mirror {
			t.Fatalf("stream %s: cluster %+v, mirror %v; want cluster %s", c.stream, info.Cluster, info.Config.Mirror, c.cluster)
		}
	}
	if gwB.log.Epoch() != gwA.log.Epoch() {
		t.Fatalf("epochs differ: A %d, B %d", gwA.log.Epoch(), gwB.log.Epoch())
	}

	seen := switchRegions(t, gwA, gwB, "travel")
	switchRegions(t, gwB, gwA, "travel", seen...)
	assertSameHistory(t, gwA, gwB, "travel")
	med, worst := measureCrossRegion(t, gwA, gwB, 20)
	t.Logf("published in A, received live in B: median %s, max %s", med.Round(time.Microsecond), worst.Round(time.Microsecond))
	t.Logf("done %s after start", time.Since(began).Round(time.Millisecond))
}
