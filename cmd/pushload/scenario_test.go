package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testSecret = "0123456789abcdef0123456789abcdef-pushload-test"

// testOptions returns validated options for a tiny run against url.
func testOptions(t *testing.T, url string, mutate func(*options)) *options {
	t.Helper()
	o := &options{
		url: url, conns: 6, channels: 3, secret: testSecret, cookieName: "async-token", channelKey: "channel",
		tokenTTL: time.Hour, srcAddrs: 2, readBuffer: 512, dialConc: 4, dialTO: 5 * time.Second, dialRetry: 0,
		publish: "batch", rate: 300, duration: 200 * time.Millisecond, settle: 20 * time.Millisecond,
		drain: 3 * time.Second, maxEvents: 10_000, maxRuntime: 30 * time.Second, quiet: true, metricsURL: "none",
	}
	if mutate != nil {
		mutate(o)
	}
	if err := o.validate(); err != nil {
		t.Fatalf("options: %v", err)
	}
	return o
}

// startBaseline serves the bare WebSocket baseline on a loopback port.
func startBaseline(t *testing.T) *httptest.Server {
	t.Helper()
	b := newWSBaseline(testSecret, "async-token", "channel", 1024, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.shutdown(ctx)
		srv.Close()
	})
	return srv
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/" }

// runScenario runs a client-side scenario in process and returns its result.
func runScenario(t *testing.T, name string, o *options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), o.maxRuntime)
	defer cancel()
	r, err := newRunner(o, name, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	err = scenarioFuncs[name](ctx, r)
	r.close()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r.res
}

func TestFanoutCleanRunAgainstBaseline(t *testing.T) {
	srv := startBaseline(t)
	res := runScenario(t, "fanout", testOptions(t, wsURL(srv), nil))
	a, d := res.Accounting, res.Delivery
	if res.Connections.Connect.Connected != 6 {
		t.Fatalf("connected %d, want 6 (errors %v)", res.Connections.Connect.Connected, res.Connections.Errors)
	}
	if res.Publish.Events == 0 || d.Expected != 2*res.Publish.Events {
		t.Fatalf("published %d, expected deliveries %d: want 2 per event", res.Publish.Events, d.Expected)
	}
	if d.Received != d.Expected || d.Foreign != 0 || d.WrongChannel != 0 {
		t.Fatalf("received %d of %d (foreign %d, wrong channel %d)", d.Received, d.Expected, d.Foreign, d.WrongChannel)
	}
	if a.Lost != 0 || a.Duplicated != 0 || a.OutOfOrder != 0 || a.IDRegress != 0 {
		t.Fatalf("clean run: lost %d dup %d ooo %d id regress %d, want all 0", a.Lost, a.Duplicated, a.OutOfOrder, a.IDRegress)
	}
	if res.Latency.Count != d.Received || res.Latency.MaxMs <= 0 {
		t.Fatalf("latency %+v for %d deliveries", res.Latency, d.Received)
	}
}

func TestIdleReportsServerMetrics(t *testing.T) {
	srv := startBaseline(t)
	o := testOptions(t, wsURL(srv), func(o *options) {
		o.publish, o.metricsURL = "none", srv.URL+"/metrics"
		o.duration = 50 * time.Millisecond
	})
	res := runScenario(t, "idle", o)
	if res.Idle == nil || res.Idle.Connections != 6 {
		t.Fatalf("idle result %+v", res.Idle)
	}
	if res.Server == nil || res.Server.HeapInuseAfter <= 0 {
		t.Fatalf("server heap not read from /metrics: %+v", res.Server)
	}
	if got := res.Server.MetricsDelta["baseline_connections"]; got != 6 {
		t.Fatalf("baseline_connections delta %v, want 6", got)
	}
}

func TestSlowClientsDoNotDisturbTheAccounting(t *testing.T) {
	srv := startBaseline(t)
	o := testOptions(t, wsURL(srv), func(o *options) {
		o.slowK, o.slowRcvBuf = 2, 4096
		o.duration = 300 * time.Millisecond
		o.drain = time.Second
	})
	res := runScenario(t, "slow", o)
	s, a := res.Slow, res.Accounting
	if s == nil || s.SlowClients != 2 || s.SlowClosed+s.SlowDraining+s.SlowOpen != 2 {
		t.Fatalf("slow result %+v", s)
	}
	if a.Lost != 0 || a.Duplicated != 0 || res.Delivery.Received != res.Delivery.Expected {
		t.Fatalf("reading clients: lost %d dup %d, received %d of %d", a.Lost, a.Duplicated, res.Delivery.Received, res.Delivery.Expected)
	}
	if len(res.Phases) != 2 || res.Phases[1].Received == 0 {
		t.Fatalf("phases %+v", res.Phases)
	}
}
