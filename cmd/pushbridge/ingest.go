package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/bridge"
	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/configs"
)

func runIngest(ctx context.Context, e env) error {
	return errors.New("not built yet")
}

func newServeIngest(cfg *configs.Config, link *natsLink, elog *eventlog.Log, log *slog.Logger, reg prometheus.Registerer, gw *bridge.Server) (func(context.Context) error, error) {
	return nil, nil
}
