package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/configs"
	"github.com/pushbridge/pushbridge/embedded"
)

// errUsage is returned when flags could not be parsed (the flag package has
// printed why).
var errUsage = errors.New("usage")

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	return nil
}

// loadConfig loads the configuration and builds the logger, reporting where
// the configuration came from.
func loadConfig(path string, e env) (configs.Config, *slog.Logger, func(), error) {
	cfg, src, err := configs.Load(path, e.lookupEnv)
	if err != nil {
		return cfg, nil, nil, err
	}
	log, closeLog, err := newLogger(&cfg, e.stderr)
	if err != nil {
		return cfg, nil, nil, err
	}
	log.Info("configuration loaded", "file", src.File, "env", src.Env)
	for _, w := range src.Warnings {
		log.Warn("configuration: " + w)
	}
	return cfg, log, closeLog, nil
}

// newLogger builds the slog logger: text or JSON on stderr, and also into
// logFilename when logToFile is set (superset-websocket's options).
func newLogger(cfg *configs.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	level, err := cfg.SlogLevel()
	if err != nil {
		return nil, nil, err
	}
	out := stderr
	closeFn := func() {}
	if cfg.LogToFile {
		f, err := os.OpenFile(cfg.LogFilename, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("logFilename: %w", err)
		}
		out = io.MultiWriter(stderr, f)
		closeFn = func() { _ = f.Close() }
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(out, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(out, opts)
	}
	return slog.New(h), closeFn, nil
}

// natsLink is the NATS side of a process: the connection, and the embedded
// server when there is one.
type natsLink struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *embedded.Server
	log      *slog.Logger
}

// connectNATS starts the embedded server (the default) or connects to the
// external one at nats.url.
func connectNATS(ctx context.Context, cfg *configs.Config, log *slog.Logger, name string) (*natsLink, error) {
	link := &natsLink{log: log}
	if cfg.NATS.URL == "" {
		srv, err := embedded.New(cfg.Embedded(log))
		if err != nil {
			return nil, err
		}
		if err := srv.Start(ctx); err != nil {
			return nil, err
		}
		link.embedded = srv
		nc, err := srv.Connect(nats.Name(name))
		if err != nil {
			_ = srv.Shutdown(ctx)
			return nil, err
		}
		link.nc = nc
	} else {
		opts, err := cfg.NATSOptions(name)
		if err != nil {
			return nil, err
		}
		opts = append(opts,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
			nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
		)
		nc, err := nats.Connect(cfg.NATS.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to nats.url: %w", err)
		}
		link.nc = nc
		log.Info("using external NATS", "url", nc.ConnectedUrlRedacted())
	}
	var err error
	link.js, err = eventlog.NewJetStream(link.nc, cfg.JetStreamDomain())
	if err != nil {
		link.close(ctx)
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return link, nil
}

// close drains the connection and stops the embedded server in lame-duck
// mode.
func (l *natsLink) close(ctx context.Context) {
	if l.nc != nil {
		done := make(chan struct{})
		l.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := l.nc.Drain(); err != nil {
			l.nc.Close()
		} else {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				l.nc.Close()
			}
		}
	}
	if l.embedded != nil {
		if err := l.embedded.Shutdown(ctx); err != nil {
			l.log.Warn("embedded nats-server shutdown", "err", err)
		}
	}
}

// mirrorConn opens the Redis mirror's own NATS connection. It does not
// buffer publishes while it reconnects (nats.ReconnectBufSize(-1)): they
// fail at once and the mirror retries them from its checkpoint. A buffered
// publish would be sent after the reconnect — perhaps after the lease has
// passed to another mirror, and after the stream's dedupe window — and be
// stored twice. The gateway's connection keeps its buffer: its publishes
// (the HTTP publish API, consumer pulls) are safe to deliver late.
func (l *natsLink) mirrorConn(cfg *configs.Config) (*nats.Conn, error) {
	const name = "pushbridge-ingest"
	if l.embedded != nil {
		return l.embedded.Connect(nats.Name(name), nats.ReconnectBufSize(-1))
	}
	opts, err := cfg.NATSOptions(name)
	if err != nil {
		return nil, err
	}
	log := l.log
	opts = append(opts,
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected (ingest)", "err", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected (ingest)", "server", nc.ConnectedUrlRedacted()) }),
	)
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect the mirror to nats.url: %w", err)
	}
	return nc, nil
}

// openEventLog opens the stream.
func openEventLog(ctx context.Context, cfg *configs.Config, link *natsLink, log *slog.Logger) (*eventlog.Log, error) {
	return eventlog.Open(ctx, link.js, cfg.EventLog(log))
}
