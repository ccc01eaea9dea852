package embedded_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded"
	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

func TestInProcessOnlyByDefault(t *testing.T) {
	srv, nc := embeddedtest.Run(t)
	if srv.ClientURL() != "" {
		t.Fatalf("client URL %q without a listener", srv.ClientURL())
	}
	js, _ := jetstream.New(nc)
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Fatalf("jetstream unavailable in process: %v", err)
	}
}

func TestListenerAndPersistence(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	srv := embeddedtest.Start(t, embeddedtest.Options{TCP: true, StoreDir: dir})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("TCP connect to %s: %v", srv.ClientURL(), err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.x", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx); err != nil { // idempotent
		t.Fatal(err)
	}

	_, nc2 := embeddedtest.RunWith(t, embeddedtest.Options{StoreDir: dir})
	js2, _ := jetstream.New(nc2)
	s, err := js2.Stream(ctx, "S")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	msg, err := s.GetMsg(ctx, 1)
	if err != nil || string(msg.Data) != "kept" {
		t.Fatalf("message lost across restart: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]embedded.Config{
		"cluster without listener": {Cluster: embedded.ClusterConfig{Name: "c", Listen: "127.0.0.1:-1"}},
		"cluster without name":     {Listen: "127.0.0.1:-1", Cluster: embedded.ClusterConfig{Listen: "127.0.0.1:-1"}},
		"bad listen":               {Listen: "nope"},
		"grace longer":             {LameDuckDuration: time.Second, LameDuckGracePeriod: 2 * time.Second},
	} {
		if _, err := embedded.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	srv, err := embedded.New(embedded.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.InProcessConn(); err == nil {
		t.Fatal("in-process connection before Start")
	}
}

// TestClusterRoutesUseClusterCredentials: routes listed without user info
// authenticate with the cluster's user and password, so a route list (and
// PUSHBRIDGE_NATS_ROUTES) holds no secret.
func TestClusterRoutesUseClusterCredentials(t *testing.T) {
	ctx := context.Background()
	ports := freePorts(t, 2)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var servers []*embedded.Server
	for i, p := range ports {
		srv, err := embedded.New(embedded.Config{
			Name:     fmt.Sprintf("auth-%d", i),
			StoreDir: t.TempDir(),
			Listen:   "127.0.0.1:-1",
			Username: "app", Password: "client-secret",
			Cluster: embedded.ClusterConfig{
				Name: "auth", Listen: fmt.Sprintf("127.0.0.1:%d", p), Routes: routes,
				Username: "route", Password: "route-secret",
			},
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
		servers = append(servers, srv)
	}
	deadline := time.Now().Add(10 * time.Second)
	for servers[0].NATS().NumRoutes() == 0 || servers[1].NATS().NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no routes formed: %d and %d", servers[0].NATS().NumRoutes(), servers[1].NATS().NumRoutes())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for range n {
		out = append(out, embeddedtest.FreePort(t))
	}
	return out
}
