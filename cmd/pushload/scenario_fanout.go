package main

import (
	"context"
	"errors"
	"time"
)

// runFanout is the fan-out scenario: open every connection, publish at a
// fixed rate for --duration, drain, and report throughput, latency and the
// per-connection accounting, with the server's CPU per delivery when its
// PID is known.
func runFanout(ctx context.Context, r *runner) error {
	o := r.o
	idxs := r.pool.add(o.conns, false)
	cr := r.pool.connect(ctx, idxs, o.dialConc, false)
	r.connSummary(cr, o.conns)
	if cr.Connected == 0 {
		return errors.New("no connection could be opened")
	}
	sleep(ctx, o.settle)
	if err := r.startPublisher(ctx); err != nil {
		return err
	}
	before := r.probe.take(ctx)
	framesBefore := r.st.frames.Load()
	stop := r.progress(ctx, "fanout", nil)
	ph := r.st.startPhase("fanout", o.rate)
	t0 := time.Now()
	r.pace(ctx, ph, o.rate, o.duration, 0, r.allChannels())
	pubSecs := time.Since(t0).Seconds()
	r.finishPublisher(o.drain)
	r.drain(ctx, o.drain)
	stop()
	after := r.probe.take(ctx)
	r.summarise([]*phase{ph}, pubSecs)
	r.res.Server = r.serverSummary(before, after, r.st.frames.Load()-framesBefore)
	r.connSummary(cr, o.conns)
	return nil
}
