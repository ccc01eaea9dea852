package main

import (
	"context"
	"errors"
)

// IdleResult is the idle scenario's outcome: what N idle connections cost
// the server (and the load tool).
type IdleResult struct {
	Connections int `json:"connections"`
	// Server RSS from /proc/<pid>/status before connecting and after
	// --settle, and the delta per connection.
	ServerRSSBefore  int64   `json:"server_rss_before_bytes"`
	ServerRSSAfter   int64   `json:"server_rss_after_bytes"`
	ServerRSSDelta   int64   `json:"server_rss_delta_bytes"`
	ServerRSSPerConn float64 `json:"server_rss_bytes_per_conn"`
	// ServerRSSEndOfHold is the RSS after holding for --duration.
	ServerRSSEndOfHold int64 `json:"server_rss_end_of_hold_bytes"`
	// Go heap and goroutine stacks in use, from the server's /metrics.
	ServerHeapDelta   float64 `json:"server_heap_inuse_delta_bytes"`
	ServerHeapPerConn float64 `json:"server_heap_inuse_bytes_per_conn"`
	ServerStackDelta  float64 `json:"server_stack_inuse_delta_bytes"`
	ServerGoroutines  float64 `json:"server_goroutines_delta"`
	// SlabDelta is the machine's kernel slab growth: both ends of every
	// socket (client and server) live on this machine.
	SlabDelta        int64   `json:"kernel_slab_delta_bytes"`
	ClientRSSPerConn float64 `json:"client_rss_bytes_per_conn"`
	ClientHeapStack  float64 `json:"client_heap_and_stack_bytes_per_conn"`
	HeldSeconds      float64 `json:"held_seconds"`
}

// runIdle is the idle scenario: open N connections, let them settle,
// measure the server's memory per connection, hold them for --duration
// (the server keeps pinging them), measure again.
func runIdle(ctx context.Context, r *runner) error {
	o := r.o
	selfBefore := readSelfMemory()
	before := r.probe.take(ctx)
	idxs := r.pool.add(o.conns, false)
	stop := r.progress(ctx, "idle", nil)
	cr := r.pool.connect(ctx, idxs, o.dialConc, false)
	r.connSummary(cr, o.conns)
	if cr.Connected == 0 {
		stop()
		return errors.New("no connection could be opened")
	}
	sleep(ctx, o.settle)
	after := r.probe.take(ctx)
	selfAfter := readSelfMemory()
	sleep(ctx, o.duration)
	end := r.probe.take(ctx)
	stop()
	n := float64(cr.Connected)
	id := &IdleResult{
		Connections:        cr.Connected,
		ServerRSSBefore:    before.rss,
		ServerRSSAfter:     after.rss,
		ServerRSSDelta:     after.rss - before.rss,
		ServerRSSEndOfHold: end.rss,
		SlabDelta:          after.slab - before.slab,
		ClientRSSPerConn:   float64(selfAfter.RSS-selfBefore.RSS) / n,
		ClientHeapStack:    float64(selfAfter.HeapInuse+selfAfter.StackInuse-selfBefore.HeapInuse-selfBefore.StackInuse) / n,
		HeldSeconds:        o.duration.Seconds(),
	}
	if before.rss > 0 {
		id.ServerRSSPerConn = float64(id.ServerRSSDelta) / n
	}
	if after.metrics != nil && before.metrics != nil {
		id.ServerHeapDelta = after.metrics["go_memstats_heap_inuse_bytes"] - before.metrics["go_memstats_heap_inuse_bytes"]
		id.ServerHeapPerConn = id.ServerHeapDelta / n
		id.ServerStackDelta = after.metrics["go_memstats_stack_inuse_bytes"] - before.metrics["go_memstats_stack_inuse_bytes"]
		id.ServerGoroutines = after.metrics["go_goroutines"] - before.metrics["go_goroutines"]
	}
	r.res.Idle = id
	r.res.Client = &ClientSummary{Before: selfBefore, After: selfAfter, BytesPerConn: id.ClientRSSPerConn, OpenFileLimit: r.nofile}
	r.res.Server = r.serverSummary(before, end, 0)
	r.connSummary(cr, o.conns)
	if o.serverPID == 0 {
		r.note("no --server-pid: server RSS per connection not measured")
	}
	return nil
}
