//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stormErrorMetrics are the gateway counters that must not move during a
// reconnect storm: any of them means a client was not served exactly or
// NATS refused the gateway something.
var stormErrorMetrics = []struct {
	name   string
	labels []string
}{
	{"pushbridge_live_consumer_errors_total", nil},
	{"pushbridge_replays_total", []string{`result="error"`}},
	{"pushbridge_replays_total", []string{`result="ahead_timeout"`}},
	{"pushbridge_replay_history_trimmed_total", nil},
	{"pushbridge_last_id_unusable_total", nil},
	{"pushbridge_send_errors_total", nil},
	{"pushbridge_upgrades_rejected_total", nil},
	{"pushbridge_connections_rejected_total", nil},
	{"pushbridge_disconnects_total", []string{`reason="slow_client"`}},
	{"pushbridge_disconnects_total", []string{`reason="write_error"`}},
	{"pushbridge_disconnects_total", []string{`reason="write_timeout"`}},
	{"pushbridge_disconnects_total", []string{`reason="replay_error"`}},
	{"pushbridge_http_publishes_total", []string{`result="unavailable"`}},
}

// TestClusterReconnectStorm: thousands of clients resume at once on the
// three-node cluster, spread over the nodes, each with a last_id taken at
// random from its channel's recent history (some served from the nodes'
// rings, most from JetStream through coalesced scans), while events keep
// being published. Every client must be made whole (exactly the events
// after its last_id, then the live ones), and no gateway may count an
// error: no live consumer error, no failed or trimmed replay, no refused
// upgrade, no failed publish.
func TestClusterReconnectStorm(t *testing.T) {
	clients := 2000
	if testing.Short() {
		clients = 300
	}
	const (
		channels = 20
		history  = 150 // events per channel before the storm
		live     = 20  // events per channel published during it
		// A ring smaller than the history sends most resumes to
		// JetStream.
		ring = 48
	)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := startGatewayCluster(t, clusterOptions{RingPerChannel: ring})
	pub := newClusterPublisher(t, c.nodes)
	var chans []string
	for i := range channels {
		chans = append(chans, fmt.Sprintf("storm-%02d", i))
	}
	began := time.Now()
	if err := pub.run(ctx, chans, 0, history, nil)(); err != nil {
		t.Fatalf("history: %v", err)
	}
	var lastSeq uint64
	for _, ch := range chans {
		evs := pub.published(ch)
		lastSeq = max(lastSeq, evs[len(evs)-1].seq)
	}
	for _, n := range c.nodes {
		waitNodeDispatched(ctx, t, n, lastSeq)
	}
	t.Logf("history: %d events on %d channels published in %s", channels*history, channels, time.Since(began).Round(time.Millisecond))

	before := scrapeAll(t, c)
	rng := rand.New(rand.NewPCG(4, uint64(clients)))
	all := make([]*clusterClient, clients)
	for i := range all {
		ch := chans[i%channels]
		// Resume after event k: every client is owed at least one event
		// of the history.
		k := 1 + rng.IntN(history-1)
		cl := newClusterClient(t, i, ch, c.nodes, "", false)
		cl.resumeAt(k, pub.published(ch)[k-1].id)
		cl.target = history
		all[i] = cl
	}
	cctx, stopClients := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stopClients(); wg.Wait() })
	start := make(chan struct{})
	for i, cl := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cl.run(cctx, i%len(c.nodes))
		}()
	}
	stormAt := time.Now()
	close(start)
	pubDone := pub.run(ctx, chans, 50*time.Millisecond, history+live, nil)

	for _, cl := range all {
		select {
		case <-cl.reached:
		case <-ctx.Done():
			var behind []string
			for _, cl := range all {
				if cl.lastN.Load() < history {
					behind = append(behind, strconv.Itoa(cl.index))
				}
			}
			t.Fatalf("%d of %d clients not whole: %v (first: %s)", len(behind), clients, ctx.Err(), strings.Join(behind[:min(len(behind), 20)], " "))
		}
	}
	var connected, whole time.Duration
	wholeEach := make([]time.Duration, 0, clients)
	for _, cl := range all {
		cl.mu.Lock()
		connected = max(connected, cl.dials[0].at.Sub(stormAt))
		d := cl.reachedAt.Sub(stormAt)
		cl.mu.Unlock()
		whole = max(whole, d)
		wholeEach = append(wholeEach, d)
	}
	if err := pubDone(); err != nil {
		t.Fatalf("live publisher: %v", err)
	}
	final := history + live
	for _, cl := range all {
		for cl.lastN.Load() < int64(final) {
			select {
			case <-ctx.Done():
				t.Fatalf("client %d stopped at n=%d of %d", cl.index, cl.lastN.Load(), final)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	liveDone := time.Since(stormAt)
	after := scrapeAll(t, c)

	var failedDials, drops, reconnects int
	for _, cl := range all {
		cl.mu.Lock()
		failedDials += cl.failedDials
		drops += len(cl.drops)
		reconnects += len(cl.dials) - 1
		cl.mu.Unlock()
	}
	stopClients()
	wg.Wait()
	bad := 0
	for _, cl := range all {
		if err := cl.verify(final, pub.published(cl.channel)); err != nil {
			if bad++; bad <= 10 {
				t.Errorf("client %d (%s, owed n=%d on): %v", cl.index, cl.channel, cl.firstN, err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d clients not whole", bad, clients)
	}
	if failedDials+drops > 0 {
		t.Errorf("%d failed dials, %d sockets dropped during the storm (%d reconnections)", failedDials, drops, reconnects)
	}
	if err := pub.checkSequences(); err != nil {
		t.Errorf("publisher acknowledgements: %v", err)
	}

	var errorsSeen []string
	for _, m := range stormErrorMetrics {
		if d := metricSum(after, m.name, m.labels...) - metricSum(before, m.name, m.labels...); d != 0 {
			errorsSeen = append(errorsSeen, fmt.Sprintf("%s%v +%v", m.name, m.labels, d))
		}
	}
	if len(errorsSeen) > 0 {
		t.Errorf("gateway error counters moved during the storm: %s", strings.Join(errorsSeen, ", "))
	}
	delta := func(name string, labels ...string) float64 {
		return metricSum(after, name, labels...) - metricSum(before, name, labels...)
	}
	sort.Slice(wholeEach, func(i, j int) bool { return wholeEach[i] < wholeEach[j] })
	t.Logf("reconnect storm: %d clients on %d channels resumed at once on %d nodes with last_ids over the last %d events of each channel; "+
		"all connected within %s, all whole within %s (p50 %s, p99 %s), all had the %d live events within %s; "+
		"replays: %v from rings, %v from JetStream, %v events replayed; error counters: %d moved (%d failed dials, %d drops); %s",
		clients, channels, len(c.nodes), history, connected.Round(time.Millisecond), whole.Round(time.Millisecond),
		wholeEach[len(wholeEach)/2].Round(time.Millisecond), wholeEach[len(wholeEach)*99/100].Round(time.Millisecond),
		live, liveDone.Round(time.Millisecond),
		delta("pushbridge_replays_total", `source="ring"`), delta("pushbridge_replays_total", `source="jetstream"`),
		delta("pushbridge_replayed_events_total"), len(errorsSeen), failedDials, drops, pub.failureSummary())
}

// scrapeAll sums the pushbridge_* samples of every running node.
func scrapeAll(t *testing.T, c *gatewayCluster) map[string]float64 {
	t.Helper()
	sum := map[string]float64{}
	for _, n := range c.nodes {
		m, err := n.Metrics()
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum
}

// waitNodeDispatched waits until the node's live consumer has dispatched
// seq (pushbridge_dispatched_sequence).
func waitNodeDispatched(ctx context.Context, t *testing.T, n *gatewayNode, seq uint64) {
	t.Helper()
	for {
		m, err := n.Metrics()
		if err == nil && metricSum(m, "pushbridge_dispatched_sequence") >= float64(seq) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not dispatch sequence %d: %v", n.name, seq, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
