package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushbridge/pushbridge/bridge"
	"github.com/pushbridge/pushbridge/configs"
)

func runServe(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	configPath := fs.String("config", "", "config file (default: config.json in the working directory, if present)")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	cfg, log, closeLog, err := loadConfig(*configPath, e)
	if err != nil {
		return err
	}
	defer closeLog()
	return serve(ctx, &cfg, log, nil)
}

// serve runs the gateway until ctx ends. listening, when not nil, receives
// the bound address once the gateway accepts connections (for tests).
func serve(ctx context.Context, cfg *configs.Config, log *slog.Logger, listening chan<- net.Addr) error {
	log.Info("pushbridge starting", "version", version(), "listen", cfg.ListenAddr())
	if limit := raiseFileLimit(log); limit > 0 && cfg.MaxTotalConnections > 0 && limit < uint64(cfg.MaxTotalConnections)+256 {
		log.Warn("the open files limit is below maxTotalConnections: sockets beyond it will be refused by the kernel",
			"limit", limit, "max_total_connections", cfg.MaxTotalConnections)
	}
	link, err := connectNATS(ctx, cfg, log, "pushbridge-gateway")
	if err != nil {
		return err
	}
	shutdownCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	}
	defer func() {
		sctx, cancel := shutdownCtx()
		defer cancel()
		link.close(sctx)
	}()
	elog, err := openEventLog(ctx, cfg, link, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var sd bridge.StatsdClient
	if !cfg.Statsd.Disabled && cfg.Statsd.Host != "" {
		client, err := statsd.New(net.JoinHostPort(cfg.Statsd.Host, strconv.Itoa(cfg.Statsd.Port)),
			statsd.WithTags(cfg.Statsd.GlobalTags), statsd.WithoutTelemetry(), statsd.WithoutOriginDetection())
		if err != nil {
			log.Warn("statsd disabled: cannot create client", "err", err)
		} else {
			defer client.Close()
			sd = client
		}
	}
	gw, err := bridge.New(cfg.Bridge(log, reg, sd), elog)
	if err != nil {
		return err
	}

	ingestRun, closeIngest, err := newServeIngest(cfg, link, elog, log, reg, gw)
	if err != nil {
		return err
	}
	defer closeIngest() // if serve returns before the mirror runs
	if ingestRun == nil && cfg.Ingest.Enabled == nil {
		log.Warn(`Superset Redis mirror off: no "redis" block or REDIS_* variable is configured, so nothing Superset writes to Redis reaches browsers ` +
			`(superset-websocket read 127.0.0.1:6379 by default); set REDIS_HOST or add a "redis" block to mirror it, or set ingest.enabled false (PUSHBRIDGE_INGEST_ENABLED=false) if you publish otherwise`)
	}

	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr(), err)
	}
	httpSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	var extra []*http.Server
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		extra = append(extra, &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	}
	if cfg.DebugListen != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		extra = append(extra, &http.Server{Addr: cfg.DebugListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	}

	gwCtx, stopGateway := context.WithCancel(context.Background())
	defer stopGateway()
	var wg sync.WaitGroup
	errc := make(chan error, 4+len(extra))
	goRun := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	goRun("gateway", func() error { return gw.Run(gwCtx) })
	if ingestRun != nil {
		goRun("ingest", func() error { return ingestRun(gwCtx) })
	}
	goRun("http", func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	for _, s := range extra {
		goRun("http "+s.Addr, func() error {
			if err := s.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("pushbridge listening", "addr", ln.Addr().String(), "stream", elog.Stream(), "epoch", elog.Epoch(),
		"embedded_nats", link.embedded != nil)
	if listening != nil {
		listening <- ln.Addr()
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("signal received, pushbridge shutting down")
	case runErr = <-errc:
		log.Error("component failed, shutting down", "err", runErr)
	}
	// Stop accepting first; hijacked WebSockets are the gateway's to close.
	sctx, cancel := shutdownCtx()
	defer cancel()
	_ = httpSrv.Shutdown(sctx)
	for _, s := range extra {
		_ = s.Shutdown(sctx)
	}
	stopGateway()
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-sctx.Done():
		log.Error("shutdown timed out", "timeout", cfg.ShutdownTimeout.D())
	}
	for len(errc) > 0 {
		if err := <-errc; runErr == nil {
			runErr = err
		}
	}
	log.Info("pushbridge stopped")
	return runErr
}
