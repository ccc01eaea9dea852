package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RampResult is the ramp scenario's outcome.
type RampResult struct {
	P99BoundMs float64 `json:"p99_bound_ms"`
	// BestRate is the highest step rate (events/s) that passed, with every
	// lower step passing too; BestDeliveriesPerSecond its delivery rate.
	BestRate                float64    `json:"best_rate"`
	BestDeliveriesPerSecond float64    `json:"best_deliveries_per_second"`
	StopReason              string     `json:"stop_reason"`
	Steps                   []RampStep `json:"steps"`
}

// RampStep is one step and its verdict.
type RampStep struct {
	PhaseSummary
	Pass bool   `json:"pass"`
	Why  string `json:"why,omitempty"`
}

// runRamp is the rate ramp: publish at --rate-start, then raise the rate by
// --rate-step every --step-duration up to --rate-max. A step passes when
// its events' p99 latency is within --p99-bound, at least 99.9 % of its
// deliveries arrived by the end of the next step, and the publisher kept
// its rate. The ramp stops one step after the first failure.
func runRamp(ctx context.Context, r *runner) error {
	o := r.o
	if o.rateStart <= 0 || o.rateStep <= 0 || o.rateMax < o.rateStart {
		return errors.New("ramp needs --rate-start > 0, --rate-step > 0 and --rate-max >= --rate-start")
	}
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
	bound := float64(o.p99Bound) / float64(time.Millisecond)
	evaluate := func(ph *phase) RampStep {
		s := RampStep{PhaseSummary: phaseSummary(ph), Pass: true}
		switch {
		case s.Expected == 0:
			s.Pass, s.Why = false, "nothing expected (no subscribers?)"
		case float64(s.Received) < 0.999*float64(s.Expected):
			s.Pass, s.Why = false, fmt.Sprintf("fell behind: %d of %d deliveries arrived", s.Received, s.Expected)
		case s.Latency.P99Ms > bound:
			s.Pass, s.Why = false, fmt.Sprintf("p99 %.2f ms above the bound", s.Latency.P99Ms)
		case s.AchievedRate < 0.95*s.TargetRate:
			s.Pass, s.Why = false, fmt.Sprintf("publisher reached only %.0f/s", s.AchievedRate)
		}
		return s
	}
	before := r.probe.take(ctx)
	framesBefore := r.st.frames.Load()
	stop := r.progress(ctx, "ramp", nil)
	t0 := time.Now()
	var phases []*phase
	var steps []RampStep
	stopReason := "reached --rate-max"
	for rate := o.rateStart; rate <= o.rateMax && ctx.Err() == nil; rate += o.rateStep {
		ph := r.st.startPhase(fmt.Sprintf("%.0f/s", rate), rate)
		r.pace(ctx, ph, rate, o.stepDuration, 0, r.allChannels())
		phases = append(phases, ph)
		if len(phases) >= 2 {
			s := evaluate(phases[len(phases)-2])
			steps = append(steps, s)
			if !s.Pass {
				stopReason = "step " + s.Name + ": " + s.Why
				break
			}
		}
		if r.bk.sentTotal() >= o.maxEvents {
			stopReason = "reached --max-events"
			break
		}
	}
	if ctx.Err() != nil {
		stopReason = "run cut short: " + ctx.Err().Error()
	}
	pubSecs := time.Since(t0).Seconds()
	r.finishPublisher(o.drain)
	r.drain(ctx, o.drain)
	stop()
	after := r.probe.take(ctx)
	for i := len(steps); i < len(phases); i++ {
		steps = append(steps, evaluate(phases[i]))
	}
	rr := &RampResult{P99BoundMs: bound, StopReason: stopReason, Steps: steps}
	for _, s := range steps {
		if !s.Pass {
			break
		}
		rr.BestRate, rr.BestDeliveriesPerSecond = s.TargetRate, s.PerSecond
	}
	r.res.Ramp = rr
	r.summarise(phases, pubSecs)
	r.res.Server = r.serverSummary(before, after, r.st.frames.Load()-framesBefore)
	r.connSummary(cr, o.conns)
	return nil
}
