package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushbridge/pushbridge/bridge"
	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/configs"
	"github.com/pushbridge/pushbridge/ingest"
)

// runIngest runs only the Redis mirror, for deployments that scale the
// gateways and the mirror separately (usually with nats.url). Two or more
// may run: one holds the lease and mirrors, the others stand by.
func runIngest(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
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
	if cfg.NATS.URL == "" {
		log.Warn("pushbridge ingest without nats.url runs its own embedded NATS server; gateways must share it (nats.embedded.listen) or use a cluster")
	}
	link, err := connectNATS(ctx, &cfg, log, "pushbridge-ingest")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
		defer cancel()
		link.close(sctx)
	}()
	elog, err := openEventLog(ctx, &cfg, link, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mirror, closeMirror, err := newMirror(&cfg, link, elog, log, reg)
	if err != nil {
		return err
	}
	defer closeMirror()
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
			ok, detail := mirror.Ready()
			if !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			fmt.Fprintln(w, detail)
		})
		mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "OK") })
		srv := &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener failed", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("pushbridge ingest running", "version", version(), "firehose", cfg.RedisStreamPrefix+"full", "stream", elog.Stream())
	return mirror.Run(ctx)
}

// newMirror builds the Redis client, the mirror's NATS connection and the
// mirror; closeMirror closes the connections once the mirror stopped.
func newMirror(cfg *configs.Config, link *natsLink, elog *eventlog.Log, log *slog.Logger, reg prometheus.Registerer) (_ *ingest.Mirror, closeMirror func(), _ error) {
	rdb, err := ingest.NewRedisClient(cfg.RedisClientConfig())
	if err != nil {
		return nil, nil, err
	}
	nc, err := link.mirrorConn(cfg)
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	closeMirror = func() {
		nc.Close()
		_ = rdb.Close()
	}
	icfg := cfg.IngestConfig(log, reg)
	icfg.Conn = nc
	mirror, err := ingest.New(icfg, rdb, elog)
	if err != nil {
		closeMirror()
		return nil, nil, err
	}
	return mirror, closeMirror, nil
}

// newServeIngest returns the mirror's run function when serve should
// mirror Redis (a redis block or REDIS_* variable is present), and reports
// its state in /ready. closeIngest releases the mirror's Redis client and
// NATS connection; run calls it when it returns, and serve calls it too in
// case run never does (it may be called more than once).
func newServeIngest(cfg *configs.Config, link *natsLink, elog *eventlog.Log, log *slog.Logger, reg prometheus.Registerer, gw *bridge.Server) (run func(context.Context) error, closeIngest func(), _ error) {
	if !cfg.IngestEnabled() {
		return nil, func() {}, nil
	}
	mirror, closeMirror, err := newMirror(cfg, link, elog, log, reg)
	if err != nil {
		return nil, nil, err
	}
	closeIngest = sync.OnceFunc(closeMirror)
	gw.AddReadyCheck("ingest", mirror.Ready)
	return func(ctx context.Context) error {
		defer closeIngest()
		return mirror.Run(ctx)
	}, closeIngest, nil
}
