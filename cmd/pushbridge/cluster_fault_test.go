//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Process-level fault tests of the clustered embedded topology: three
// `pushbridge serve` processes, one JetStream cluster, the stream at R3,
// clients on every node and a publisher running. The node holding the
// stream leader is killed (SIGKILL), or stopped gracefully (SIGTERM), or
// killed and restarted; in every case each client's frames must be exactly
// its channel's published events from its first frame on: none lost, none
// duplicated, in order.

// Sizes of the fault workload.
const (
	faultChannels          = 12
	faultClientsPerChannel = 3 // one on every node
	faultInterval          = 40 * time.Millisecond
)

// faultWorkload is the clients and the publisher of one fault test.
type faultWorkload struct {
	t        *testing.T
	cluster  *gatewayCluster
	channels []string
	clients  []*clusterClient
	pub      *clusterPublisher

	clientsCtx    context.Context
	cancelClients context.CancelFunc
	clientsDone   sync.WaitGroup
	stopPub       chan struct{}
	pubWait       func() error
	stopped       bool
}

// startFaultWorkload connects the clients, spread over the nodes so that
// every channel has a client on every node, then starts publishing.
func startFaultWorkload(ctx context.Context, t *testing.T, c *gatewayCluster) *faultWorkload {
	t.Helper()
	w := &faultWorkload{t: t, cluster: c, pub: newClusterPublisher(t, c.nodes), stopPub: make(chan struct{})}
	for i := range faultChannels {
		w.channels = append(w.channels, fmt.Sprintf("fault-%02d", i))
	}
	cctx, cancel := context.WithCancel(ctx)
	w.clientsCtx, w.cancelClients = cctx, cancel
	for i, ch := range w.channels {
		for k := range faultClientsPerChannel {
			cl := newClusterClient(t, len(w.clients), ch, c.nodes, "", true)
			// Connected before the first publish: owed every event.
			cl.owedFrom = 1
			w.start(cl, (i*faultClientsPerChannel+k)%len(c.nodes))
		}
	}
	t.Cleanup(func() {
		w.stopPublisher()
		cancel()
		w.clientsDone.Wait()
	})
	for _, cl := range w.clients {
		select {
		case <-cl.connected:
		case <-ctx.Done():
			t.Fatalf("client %d did not connect: %v", cl.index, ctx.Err())
		}
	}
	// Every socket is registered before its handshake completes: from
	// here on each one receives every event of its channel.
	w.pubWait = w.pub.run(ctx, w.channels, faultInterval, 0, w.stopPub)
	return w
}

// start adds a client and runs it, first on node.
func (w *faultWorkload) start(cl *clusterClient, node int) {
	w.clients = append(w.clients, cl)
	w.clientsDone.Add(1)
	go func() {
		defer w.clientsDone.Done()
		cl.run(w.clientsCtx, node)
	}()
}

func (w *faultWorkload) stopPublisher() error {
	if w.stopped || w.pubWait == nil {
		return nil
	}
	w.stopped = true
	close(w.stopPub)
	return w.pubWait()
}

// waitAll polls until cond holds for every client.
func (w *faultWorkload) waitAll(ctx context.Context, what string, cond func(*clusterClient) bool) {
	w.t.Helper()
	for {
		var behind []int
		for _, cl := range w.clients {
			if !cond(cl) {
				behind = append(behind, cl.index)
			}
		}
		if len(behind) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			w.logNodeStates()
			w.t.Fatalf("%s: clients %v not there: %v (publisher: %d attempts, %s, last error %v)",
				what, behind, ctx.Err(), w.pub.attempts.Load(), w.pub.failureSummary(), w.pub.lastErr.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitDeliveredAfter waits until every client has received its channel's
// first event published after t and returns those events. A failover takes
// seconds (a raft election after a crash); 45s is a failure.
func (w *faultWorkload) waitDeliveredAfter(ctx context.Context, t time.Time) map[string]pubEvent {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	var first map[string]pubEvent
	w.waitAll(ctx, "delivery of events published after "+t.Format("15:04:05.000"), func(cl *clusterClient) bool {
		if first == nil {
			var ok bool
			if first, ok = w.pub.firstAfter(w.channels, t); !ok {
				first = nil
				return false
			}
		}
		return int(cl.lastN.Load()) >= first[cl.channel].n
	})
	return first
}

// logNodeStates logs every running node's /ready and dispatch position,
// for failure messages.
func (w *faultWorkload) logNodeStates() {
	for _, n := range w.cluster.nodes {
		if !n.Running() {
			continue
		}
		body := "unreachable"
		if resp, err := probeClient.Get(n.Base() + "/ready"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			body = strings.TrimSpace(string(b))
		}
		m, _ := n.Metrics()
		w.t.Logf("%s: /ready %s; live consumer errors %v", n.name, body, metricSum(m, "pushbridge_live_consumer_errors_total"))
	}
	for _, ch := range w.channels {
		w.t.Logf("%s: %d events stored", ch, w.pub.count(ch))
		break
	}
}

// clientsOn returns the clients whose socket is on node now.
// leaderToFail finds the stream leader and its node, checks that the node
// holds one client per channel (the ones that must move), and starts
// watching for the next leader through another node.
func (w *faultWorkload) leaderToFail(ctx context.Context) (leader string, victim *gatewayNode, moved []*clusterClient, watch *leaderWatch) {
	w.t.Helper()
	c := w.cluster
	leader, _ = c.WaitLeader(ctx, "")
	victim = c.Node(leader)
	moved = w.clientsOn(victim.index)
	if len(moved) != faultChannels {
		w.t.Fatalf("%d clients on %s, want %d", len(moved), victim.name, faultChannels)
	}
	watch = c.WatchLeader(ctx, c.nodes[(victim.index+1)%len(c.nodes)])
	return leader, victim, moved, watch
}

func (w *faultWorkload) clientsOn(node int) []*clusterClient {
	var out []*clusterClient
	for _, cl := range w.clients {
		if cl.currentNode() == node {
			out = append(out, cl)
		}
	}
	return out
}

// failoverFigures are the times a fault cost, measured from the signal.
type failoverFigures struct {
	// allWhole: until every client had received its channel's first event
	// whose publishing began after the signal.
	allWhole time.Duration
	// movedReconnected, movedFirstFrame: the clients of the stopped node,
	// until the last of them was connected to another node, and until the
	// last of them had received a frame there.
	movedReconnected, movedFirstFrame time.Duration
	// publishWorst: the longest publish (first attempt to acknowledgement)
	// begun from a second before the signal on.
	publishWorst time.Duration
	publishWhich string
	// deliveryWorst: the longest time from a publish's acknowledgement to
	// a client's frame, for the same events.
	deliveryWorst time.Duration
}

func (f failoverFigures) String() string {
	return fmt.Sprintf("every client had an event published after the signal within %s; "+
		"the stopped node's clients were reconnected elsewhere within %s and received frames there within %s; "+
		"worst publish %s (%s); worst delivery after acknowledgement %s",
		f.allWhole.Round(time.Millisecond), f.movedReconnected.Round(time.Millisecond), f.movedFirstFrame.Round(time.Millisecond),
		f.publishWorst.Round(time.Millisecond), f.publishWhich, f.deliveryWorst.Round(time.Millisecond))
}

// figures computes the failover figures of a fault at signalled.
func (w *faultWorkload) figures(signalled time.Time, first map[string]pubEvent, moved []*clusterClient, stopped int) failoverFigures {
	w.t.Helper()
	var f failoverFigures
	for _, cl := range moved {
		cl.mu.Lock()
		for _, d := range cl.dials {
			if d.at.After(signalled) {
				f.movedReconnected = max(f.movedReconnected, d.at.Sub(signalled))
				break
			}
		}
		for _, fr := range cl.frames {
			if fr.at.After(signalled) && fr.node != stopped {
				f.movedFirstFrame = max(f.movedFirstFrame, fr.at.Sub(signalled))
				break
			}
		}
		cl.mu.Unlock()
	}
	from := signalled.Add(-time.Second)
	for _, cl := range w.clients {
		at, ok := cl.frameAt(first[cl.channel].n)
		if !ok {
			w.t.Errorf("client %d has no frame n=%d:\n%s", cl.index, first[cl.channel].n, cl.history())
			continue
		}
		f.allWhole = max(f.allWhole, at.Sub(signalled))
		pub := w.pub.published(cl.channel)
		cl.mu.Lock()
		for _, fr := range cl.frames {
			if fr.n <= len(pub) && !pub[fr.n-1].first.Before(from) {
				f.deliveryWorst = max(f.deliveryWorst, fr.at.Sub(pub[fr.n-1].stored))
			}
		}
		cl.mu.Unlock()
	}
	f.publishWorst, f.publishWhich = w.pub.maxLatency(from, time.Now())
	return f
}

// finish stops the publisher, waits until every client has its channel's
// last event, stops the clients and verifies every client's history and
// the publisher's acknowledgements.
func (w *faultWorkload) finish(ctx context.Context) {
	w.t.Helper()
	if err := w.stopPublisher(); err != nil {
		w.t.Fatalf("publisher: %v", err)
	}
	final := map[string]int{}
	total := 0
	for _, ch := range w.channels {
		final[ch] = w.pub.count(ch)
		total += final[ch]
	}
	w.waitAll(ctx, "the channels' last events", func(cl *clusterClient) bool {
		return int(cl.lastN.Load()) >= final[cl.channel]
	})
	w.cancelClients()
	w.clientsDone.Wait()
	if err := w.pub.checkSequences(); err != nil {
		w.t.Errorf("publisher acknowledgements: %v", err)
	}
	frames, reconnects, failedDials := 0, 0, 0
	for _, cl := range w.clients {
		if err := cl.verify(final[cl.channel], w.pub.published(cl.channel)); err != nil {
			w.t.Errorf("client %d (%s): %v\n%s", cl.index, cl.channel, err, cl.history())
		}
		cl.mu.Lock()
		frames += len(cl.frames)
		reconnects += len(cl.dials) - 1
		failedDials += cl.failedDials
		cl.mu.Unlock()
	}
	w.t.Logf("%d events published on %d channels (%s; %d acknowledged as duplicates); "+
		"%d clients received %d frames, all whole (every event once, in order); %d reconnections, %d failed dial attempts",
		total, len(w.channels), w.pub.failureSummary(), w.pub.duplicates.Load(), len(w.clients), frames, reconnects, failedDials)
}

// history describes a client's connections, for failure messages.
func (cl *clusterClient) history() string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var b strings.Builder
	type item struct {
		at   time.Time
		text string
	}
	var items []item
	for _, d := range cl.dials {
		items = append(items, item{d.at, fmt.Sprintf("dial node %d last_id=%q after %d frames (%d failed attempts)", d.node, d.lastID, d.frames, d.attempts)})
	}
	for _, d := range cl.drops {
		items = append(items, item{d.at, fmt.Sprintf("drop node %d code %d hop=%v: %s", d.node, d.code, d.hop, d.err)})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].at.Before(items[j].at) })
	for _, it := range items {
		fmt.Fprintf(&b, "  %s %s\n", it.at.Format("15:04:05.000"), it.text)
	}
	if n := len(cl.frames); n > 0 {
		fmt.Fprintf(&b, "  frames: n=%d…%d (%d)\n", cl.frames[0].n, cl.frames[n-1].n, n)
	}
	return b.String()
}

// checkMovedResumed checks that each client of the stopped node resumed on
// another node after the signal, with a last_id.
func checkMovedResumed(t *testing.T, moved []*clusterClient, stopped int, signalled time.Time) {
	t.Helper()
	for _, cl := range moved {
		cl.mu.Lock()
		ok := false
		for _, d := range cl.dials {
			if d.at.After(signalled) {
				ok = d.node != stopped && d.lastID != ""
				break
			}
		}
		cl.mu.Unlock()
		if !ok {
			t.Errorf("client %d did not resume on another node with a last_id:\n%s", cl.index, cl.history())
		}
	}
}

// logNodeMetrics reports what the running nodes' live consumers and
// replays went through.
func logNodeMetrics(t *testing.T, c *gatewayCluster) {
	t.Helper()
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		m, err := n.Metrics()
		if err != nil {
			t.Logf("%s: /metrics: %v", n.name, err)
			continue
		}
		t.Logf("%s: live consumer errors %v (stalled consumers replaced: %d), replays ring %v jetstream %v ahead %v (errors %v, trimmed %v), publishes refused as unavailable %v",
			n.name, metricSum(m, "pushbridge_live_consumer_errors_total"), countLogLines(n.logPath, `"msg":"live consumer stopped, restarting","err":"eventlog: live consumer stalled`),
			metricSum(m, "pushbridge_replays_total", `source="ring"`), metricSum(m, "pushbridge_replays_total", `source="jetstream"`),
			metricSum(m, "pushbridge_replays_total", `source="ahead"`), metricSum(m, "pushbridge_replays_total", `result="error"`),
			metricSum(m, "pushbridge_replay_history_trimmed_total"), metricSum(m, "pushbridge_http_publishes_total", `result="unavailable"`))
	}
}

// TestClusterKillLeaderAndRejoin kills the node holding the stream leader
// with SIGKILL: its clients reconnect to the other nodes with their last
// id, publishes are retried until a new leader takes them, and every
// client stays whole. Then the killed node is restarted with the same
// store directory and server name and rejoins: the clients that lived on
// it move back to it, and clients returning with older ids (beyond the
// nodes' rings, so replayed from JetStream while its replica may still be
// catching up) resume on it; all of them stay whole.
func TestClusterKillLeaderAndRejoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const ring, back = 16, 40 // returning clients resume 40 events back
	c := startGatewayCluster(t, clusterOptions{RingPerChannel: ring})
	w := startFaultWorkload(ctx, t, c)
	w.waitAll(ctx, "first events", func(cl *clusterClient) bool { return cl.lastN.Load() >= 10 })

	leader, victim, moved, watch := w.leaderToFail(ctx)
	killed := victim.Kill()
	elected := watch.Next(ctx, leader)
	first := w.waitDeliveredAfter(ctx, killed)
	fig := w.figures(killed, first, moved, victim.index)
	if polled, _ := c.WaitLeader(ctx, leader); polled != elected.leader {
		t.Logf("the advisory named %s, stream info now names %s", elected.leader, polled)
	}
	t.Logf("SIGKILL of stream leader %s: %s elected after %s; %s",
		victim.name, elected.leader, elected.at.Sub(killed).Round(time.Millisecond), fig)
	checkMovedResumed(t, moved, victim.index, killed)

	// Let the history grow beyond the rings while the node is down.
	w.waitAll(ctx, "events while a node is down", func(cl *clusterClient) bool {
		return int(cl.lastN.Load()) >= first[cl.channel].n+back
	})
	restarted := time.Now()
	victim.Restart()
	victim.WaitReady(ctx)
	ready := time.Now()
	var returning []*clusterClient
	for _, ch := range w.channels {
		pub := w.pub.published(ch)
		k := len(pub) - back
		cl := newClusterClient(t, len(w.clients), ch, c.nodes, "", true)
		cl.resumeAt(k, pub[k-1].id)
		returning = append(returning, cl)
		w.start(cl, victim.index)
	}
	hopped := time.Now()
	for _, cl := range moved {
		cl.hop(victim.index)
	}
	after := w.waitDeliveredAfter(ctx, hopped)
	var worst time.Duration
	for _, cl := range append(append([]*clusterClient(nil), moved...), returning...) {
		if at, ok := cl.frameAt(after[cl.channel].n); ok {
			worst = max(worst, at.Sub(hopped))
		}
		cl.mu.Lock()
		last := cl.dials[len(cl.dials)-1]
		cl.mu.Unlock()
		if last.node != victim.index || last.at.Before(ready) {
			t.Errorf("client %d did not connect to the restarted %s:\n%s", cl.index, victim.name, cl.history())
		}
	}
	rejoinedLeader, _ := c.WaitLeader(ctx, "")
	t.Logf("restart of %s (same store and server name): ready after %s; %d clients moved back to it and %d returned to it "+
		"%d events back (ring %d per channel), all had the first event published after the move within %s; stream leader now %s",
		victim.name, ready.Sub(restarted).Round(time.Millisecond), len(moved), len(returning), back, ring,
		worst.Round(time.Millisecond), rejoinedLeader)

	// Keep publishing a little longer with clients on every node again.
	w.waitAll(ctx, "events after the rejoin", func(cl *clusterClient) bool {
		return int(cl.lastN.Load()) >= after[cl.channel].n+10
	})
	w.finish(ctx)
	logNodeMetrics(t, c)
}

// TestClusterTermLeader stops the node holding the stream leader with
// SIGTERM: it hands its leadership over before it exits (lame duck), closes
// its sockets with 1001 spread over sockets.shutdownSpread, and exits with
// status 0; its clients resume elsewhere and every client stays whole.
func TestClusterTermLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := startGatewayCluster(t, clusterOptions{})
	w := startFaultWorkload(ctx, t, c)
	w.waitAll(ctx, "first events", func(cl *clusterClient) bool { return cl.lastN.Load() >= 10 })

	leader, victim, moved, watch := w.leaderToFail(ctx)
	termed := victim.Term()
	elected := watch.Next(ctx, leader)
	newLeader, handedOver := elected.leader, elected.at
	state, exited := victim.WaitExit(30 * time.Second)
	if code := state.ExitCode(); code != 0 {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", victim.name, state)
	}
	if !handedOver.Before(exited) {
		t.Errorf("the stream leader moved to %s only %s after SIGTERM, after %s exited (%s): no lame-duck handover",
			newLeader, handedOver.Sub(termed).Round(time.Millisecond), victim.name, exited.Sub(termed).Round(time.Millisecond))
	}
	first := w.waitDeliveredAfter(ctx, termed)
	fig := w.figures(termed, first, moved, victim.index)
	t.Logf("SIGTERM of stream leader %s: leadership handed to %s after %s, process exited (status %d) after %s; %s",
		victim.name, newLeader, handedOver.Sub(termed).Round(time.Millisecond), state.ExitCode(),
		exited.Sub(termed).Round(time.Millisecond), fig)

	for _, cl := range moved {
		cl.mu.Lock()
		code := 0
		for _, d := range cl.drops {
			if d.node == victim.index && d.at.After(termed) {
				code = d.code
				break
			}
		}
		cl.mu.Unlock()
		if code != 1001 {
			t.Errorf("client %d on %s: closed with %d, want 1001 (going away):\n%s", cl.index, victim.name, code, cl.history())
		}
	}
	checkMovedResumed(t, moved, victim.index, termed)
	w.finish(ctx)
	logNodeMetrics(t, c)
}
