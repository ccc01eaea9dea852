package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushbridge/pushbridge/configs"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// TestMirrorConnDoesNotBuffer: the Redis mirror gets a NATS connection of
// its own that refuses publishes while it reconnects (so that none is sent
// late, after the lease may have moved), with the embedded server and with
// nats.url; the gateway's connection keeps buffering.
func TestMirrorConnDoesNotBuffer(t *testing.T) {
	load := func(vars map[string]string) configs.Config {
		t.Helper()
		vars["JWT_SECRET"] = testSecret
		cfg, _, err := configs.Load("", envOf(vars))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ctx := context.Background()
	t.Run("embedded", func(t *testing.T) {
		cfg := load(map[string]string{"PUSHBRIDGE_NATS_STORE_DIR": t.TempDir()})
		var logs bytes.Buffer
		log, _, _ := newLogger(&cfg, &logs)
		link, err := connectNATS(ctx, &cfg, log, "pushbridge-gateway")
		if err != nil {
			t.Fatal(err)
		}
		defer link.close(ctx)
		nc, err := link.mirrorConn(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if nc == link.nc || nc.Opts.ReconnectBufSize != -1 {
			t.Fatalf("mirror connection shared %v, reconnect buffer %d", nc == link.nc, nc.Opts.ReconnectBufSize)
		}
	})
	t.Run("nats.url", func(t *testing.T) {
		srv := embeddedtest.Start(t, embeddedtest.Options{TCP: true})
		cfg := load(map[string]string{})
		cfg.NATS.URL = srv.ClientURL()
		var logs bytes.Buffer
		log, _, _ := newLogger(&cfg, &logs)
		link, err := connectNATS(ctx, &cfg, log, "pushbridge-gateway")
		if err != nil {
			t.Fatal(err)
		}
		defer link.nc.Close()
		nc, err := link.mirrorConn(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for nc.Status() != nats.RECONNECTING || link.nc.Status() != nats.RECONNECTING {
			if time.Now().After(deadline) {
				t.Fatalf("connections %v and %v, want both reconnecting", nc.Status(), link.nc.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := nc.Publish("push.x", []byte("{}")); !errors.Is(err, nats.ErrReconnectBufExceeded) {
			t.Fatalf("mirror publish while reconnecting: %v, want %v", err, nats.ErrReconnectBufExceeded)
		}
		if err := link.nc.Publish("push.x", []byte("{}")); err != nil {
			t.Fatalf("gateway publish while reconnecting: %v (it buffers)", err)
		}
	})
}
