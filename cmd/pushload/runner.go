package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// runner holds what a client-side scenario works with: the channels and
// what was published to them (book), the clients (pool), the publisher, the
// receive statistics and the server probe. The scenario owns the runner
// and must call close, which closes every socket and stops every goroutine
// the runner started.
type runner struct {
	o     *options
	log   *slog.Logger
	out   io.Writer
	bk    *book
	st    *stats
	pool  *pool
	pub   *publisher
	probe *probe
	res   *Result

	nofile uint64
	// rr is the pacer's round-robin cursor over channels.
	rr int
	// rssMax is the largest server RSS seen by progress samples.
	rssMax atomic.Int64

	pubCancel context.CancelFunc
}

// newRunner validates the environment and prepares clients; it connects
// nothing yet.
func newRunner(o *options, scenario string, out io.Writer, log *slog.Logger) (*runner, error) {
	want := uint64(o.conns+o.slowK) + 4096
	nofile, err := raiseNoFile(want)
	if err != nil {
		log.Warn("open-files limit", "err", err)
	}
	if nofile < uint64(o.conns+o.slowK)+64 {
		return nil, fmt.Errorf("open-files limit %d is too low for %d connections; raise it (ulimit -n)", nofile, o.conns+o.slowK)
	}
	bk := newBook(rand.Uint32(), o.channels)
	tokens := make([]string, o.channels)
	for i, name := range bk.names {
		if tokens[i], err = channelToken(o.secret, o.channelKey, name, o.tokenTTL); err != nil {
			return nil, err
		}
	}
	st := newStats()
	addrs := sourceAddrs(o.target.Hostname(), o.srcAddrs)
	p := newPool(clientOptions{
		target: o.target, cookieName: o.cookieName, tokens: tokens, srcAddrs: addrs,
		readBuffer: o.readBuffer, dialTimeout: o.dialTO, dialRetries: o.dialRetry, slowRcvBuf: o.slowRcvBuf,
	}, st, bk)
	r := &runner{o: o, log: log, out: out, bk: bk, st: st, pool: p, probe: newProbe(o.serverPID, o.metricsURL), nofile: nofile}
	r.res = &Result{Tool: "pushload", Scenario: scenario, StartedAt: time.Now(), Target: o.target.String(), Publisher: o.publish}
	r.res.Connections = &ConnSummary{Channels: o.channels, SourceAddrs: max(1, len(addrs))}
	return r, nil
}

// startPublisher connects the chosen publisher and starts its workers; they
// stop when finishPublisher or close runs.
func (r *runner) startPublisher(ctx context.Context) error {
	if r.o.publish == "none" {
		return nil
	}
	var snd sender
	switch r.o.publish {
	case "nats":
		s, err := newNATSSender(r.o.natsURL, r.o.subjectPrefix, r.o.msgID, r.bk)
		if err != nil {
			return err
		}
		snd = s
	case "http":
		tok := r.o.pubToken
		if tok == "" {
			var err error
			if tok, err = publisherToken(r.o.secret, r.o.publishClaim, 24*time.Hour); err != nil {
				return err
			}
		}
		snd = newHTTPSender(r.o.httpBase, tok, r.o.workers, r.bk.names)
	case "redis":
		s := newRedisSender(r.o.redisAddr, r.o.redisPrefix, r.o.workers, r.bk.names)
		if err := s.ping(ctx); err != nil {
			s.close()
			return err
		}
		snd = s
	case "batch":
		snd = newBatchSender(r.o.httpBase, r.bk.names)
	}
	pad := ""
	if r.o.pad > 0 {
		b := make([]byte, r.o.pad)
		for i := range b {
			b[i] = 'x'
		}
		pad = string(b)
	}
	pctx, cancel := context.WithCancel(ctx)
	r.pubCancel = cancel
	r.pub = newPublisher(r.o.publish, snd, r.bk, r.o.workers, pad)
	r.pub.run(pctx)
	return nil
}

// finishPublisher publishes what is queued and waits for acknowledgements,
// at most timeout.
func (r *runner) finishPublisher(timeout time.Duration) {
	if r.pub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.pub.finish(ctx); err != nil {
		r.note("publisher: %v", err)
	}
	r.pubCancel()
	r.pub.close()
	r.pub = nil
}

// close closes every socket and stops the publisher.
func (r *runner) close() {
	if r.pub != nil {
		r.pubCancel()
		r.finishPublisher(time.Second)
	}
	r.pool.closeAll()
}

func (r *runner) note(format string, a ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, a...))
}

// allChannels lists every channel index.
func (r *runner) allChannels() []int {
	out := make([]int, len(r.bk.names))
	for i := range out {
		out[i] = i
	}
	return out
}

// pace publishes events at rate per second (0: as fast as the publisher
// takes them) over chans round robin, for d or until limit events, and
// returns how many it published. It stops early when ctx ends or the
// run's --max-events is reached.
func (r *runner) pace(ctx context.Context, ph *phase, rate float64, d time.Duration, limit int64, chans []int) int64 {
	if r.pub == nil || len(chans) == 0 {
		return 0
	}
	if limit <= 0 {
		limit = r.o.maxEvents
	}
	start := time.Now()
	deadline := start.Add(d)
	var done int64
	publishOne := func() bool {
		if r.bk.sentTotal() >= r.o.maxEvents {
			return false
		}
		ch := chans[r.rr%len(chans)]
		r.rr++
		if _, err := r.pub.publish(ctx, ch); err != nil {
			return false
		}
		ph.published.Add(1)
		ph.expected.Add(int64(r.bk.subs[ch].Load()))
		done++
		return true
	}
	if rate <= 0 {
		for done < limit && ctx.Err() == nil && (done%256 != 0 || time.Now().Before(deadline)) {
			if !publishOne() {
				break
			}
		}
		ph.end.Store(time.Now().UnixNano())
		return done
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	burst := max(int64(rate/100), 64) // at most 10 ms of events at once
	for done < limit {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		due := min(int64(rate*now.Sub(start).Seconds())+1, limit) - done
		for i := int64(0); i < min(due, burst); i++ {
			if !publishOne() {
				ph.end.Store(time.Now().UnixNano())
				return done
			}
		}
		select {
		case <-ctx.Done():
			ph.end.Store(time.Now().UnixNano())
			return done
		case <-tick.C:
		}
	}
	ph.end.Store(time.Now().UnixNano())
	return done
}

// waitPublished waits until the publisher has sent (or failed) everything
// allocated and NATS has acknowledged it, at most timeout.
func (r *runner) waitPublished(ctx context.Context, timeout time.Duration) {
	if r.pub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for r.bk.sent.Load()+r.bk.queuedFailed() < r.bk.allocatedTotal() {
		select {
		case <-ctx.Done():
			r.note("publisher still busy after %s", timeout)
			return
		case <-tick.C:
		}
	}
	if err := r.pub.snd.flush(ctx); err != nil {
		r.note("publisher: %v", err)
	}
}

// drain waits until every expected delivery has arrived, at most timeout,
// and returns how many are still outstanding.
func (r *runner) drain(ctx context.Context, timeout time.Duration) int64 {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n := r.st.outstanding()
		if n <= 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// account sums the reading clients' trackers.
func (r *runner) account() *Accounting {
	a := &Accounting{}
	for _, c := range r.pool.clients {
		if c.noRead {
			continue
		}
		c.mu.Lock()
		if !c.subscribed {
			c.mu.Unlock()
			continue
		}
		t := &c.tr
		ch := c.ch
		lost := t.missing(r.bk.last(ch), func(lo, hi int64) int64 { return r.bk.failedIn(ch, lo, hi) })
		a.Lost += lost
		a.Duplicated += t.duplicates
		a.OutOfOrder += t.outOfOrder
		a.Early += t.early
		a.IDRegress += t.idRegress
		a.IDRepeat += t.idRepeat
		a.IDUnparsed += t.idUnparsed
		if lost > 0 {
			a.ClientsLost++
		}
		if t.duplicates > 0 {
			a.ClientsDup++
		}
		if t.outOfOrder > 0 {
			a.ClientsOOO++
		}
		if c.closeErr != nil {
			a.ClientsClosed++
		}
		if t.overflow {
			a.Approximate = true
		}
		c.mu.Unlock()
	}
	return a
}

// summarise fills the common sections of the result from the phases.
func (r *runner) summarise(phases []*phase, pubSeconds float64) {
	res := r.res
	var events, expected, received int64
	h := NewHistogram()
	var first time.Time
	for i, ph := range phases {
		if i == 0 {
			first = ph.start
		}
		events += ph.published.Load()
		expected += ph.expected.Load()
		received += ph.received.Load()
		h.Merge(ph.hist)
		res.Phases = append(res.Phases, phaseSummary(ph))
	}
	var target float64
	if len(phases) > 0 {
		target = phases[len(phases)-1].rate
	}
	res.Publish = &PublishSummary{Events: events, Failed: r.bk.failed.Load(), TargetRate: target, Seconds: pubSeconds, Errors: r.bk.errors()}
	if pubSeconds > 0 {
		res.Publish.AchievedRate = float64(events) / pubSeconds
	}
	d := &DeliverySummary{Frames: r.st.frames.Load(), Expected: expected, Received: received,
		Foreign: r.st.foreign.Load(), WrongChannel: r.st.wrongChannel.Load(), Outstanding: expected - received}
	if last := r.st.lastRecv.Load(); last > 0 && !first.IsZero() {
		if span := time.Duration(last - first.UnixNano()).Seconds(); span > 0 {
			d.PerSecond = float64(received) / span
		}
	}
	res.Delivery = d
	l := h.Summary()
	res.Latency = &l
	res.Accounting = r.account()
}

func phaseSummary(ph *phase) PhaseSummary {
	s := PhaseSummary{Name: ph.name, TargetRate: ph.rate, Events: ph.published.Load(), Expected: ph.expected.Load(),
		Received: ph.received.Load(), Latency: ph.hist.Summary()}
	if end := ph.end.Load(); end > 0 {
		if secs := time.Duration(end - ph.start.UnixNano()).Seconds(); secs > 0 {
			s.AchievedRate = float64(s.Events) / secs
			s.PerSecond = float64(s.Received) / secs
		}
	}
	return s
}

// connSummary fills the connection section.
func (r *runner) connSummary(cr connectResult, clients int) {
	c := r.res.Connections
	c.Clients = clients
	c.Connect = cr
	c.OpenAtEnd = r.pool.open.Load()
	c.ServerClosed = r.pool.serverClosed.Load()
	c.DialErrors = r.pool.dialErrors.Load()
	c.Errors = r.pool.errors()
}

// serverSummary compares two probe samples, with deliveries for the cost
// per delivery.
func (r *runner) serverSummary(before, after sample, deliveries int64) *ServerSummary {
	s := &ServerSummary{PID: r.o.serverPID, RSSBefore: before.rss, RSSAfter: after.rss, RSSMax: max(r.rssMax.Load(), after.rss, before.rss)}
	if before.cpu >= 0 && after.cpu >= 0 {
		s.CPUSeconds = after.cpu - before.cpu
		if secs := after.at.Sub(before.at).Seconds(); secs > 0 {
			s.CPUUtilisation = s.CPUSeconds / secs
		}
		if deliveries > 0 {
			s.CPUPerDeliveryUs = s.CPUSeconds / float64(deliveries) * 1e6
		}
	}
	s.ClientCPUSeconds = after.selfCPU - before.selfCPU
	if deliveries > 0 {
		s.ClientCPUPerDelivery = s.ClientCPUSeconds / float64(deliveries) * 1e6
	}
	s.HeapInuseBefore = before.metrics["go_memstats_heap_inuse_bytes"]
	s.HeapInuseAfter = after.metrics["go_memstats_heap_inuse_bytes"]
	s.MetricsDelta = metricsDelta(before.metrics, after.metrics)
	if after.metricsErr != "" {
		s.MetricsUnavailable = after.metricsErr
	}
	return s
}

// progress prints a line every second until the returned stop is called;
// stop waits for the printing goroutine.
func (r *runner) progress(ctx context.Context, label string, extra func() string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		lastFrames, lastSent := r.st.frames.Load(), r.bk.sent.Load()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			frames, sent := r.st.frames.Load(), r.bk.sent.Load()
			win := r.st.swapWindow()
			rss := r.probe.rssOnly()
			for {
				m := r.rssMax.Load()
				if rss <= m || r.rssMax.CompareAndSwap(m, rss) {
					break
				}
			}
			if r.o.quiet {
				lastFrames, lastSent = frames, sent
				continue
			}
			line := fmt.Sprintf("[%s %3.0fs] open %d  pub %d/s (%d)  recv %d/s  p50 %.2f p99 %.2f max %.2f ms  outstanding %d",
				label, time.Since(start).Seconds(), r.pool.open.Load(), sent-lastSent, sent, frames-lastFrames,
				ms(win.Quantile(0.5)), ms(win.Quantile(0.99)), ms(win.Max()), r.st.outstanding())
			if rss > 0 {
				line += "  server RSS " + bytesStr(rss)
			}
			if extra != nil {
				line += "  " + extra()
			}
			fmt.Fprintln(r.out, line)
			lastFrames, lastSent = frames, sent
		}
	}()
	return func() { cancel(); wg.Wait() }
}
