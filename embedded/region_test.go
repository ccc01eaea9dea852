package embedded_test

import (
	"testing"

	"github.com/pushbridge/pushbridge/embedded"
)

// TestRegionConfigErrors: super-cluster and cluster settings that
// nats-server would accept but never run JetStream with are refused by New
// instead of making Start wait for its ready timeout.
func TestRegionConfigErrors(t *testing.T) {
	cluster := func(name string, routes ...string) embedded.ClusterConfig {
		return embedded.ClusterConfig{Name: name, Listen: "127.0.0.1:-1", Routes: routes}
	}
	gateway := embedded.GatewayConfig{Name: "A", Listen: "127.0.0.1:-1"}
	for name, cfg := range map[string]embedded.Config{
		"cluster without routes":    {Listen: "127.0.0.1:-1", Cluster: cluster("A")},
		"gateway without a cluster": {Listen: "127.0.0.1:-1", Gateway: gateway},
		"gateway named otherwise":   {Listen: "127.0.0.1:-1", Cluster: cluster("B", "nats-route://127.0.0.1:1"), Gateway: gateway},
	} {
		if _, err := embedded.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := embedded.New(embedded.Config{Listen: "127.0.0.1:-1", Cluster: cluster("A", "nats-route://127.0.0.1:1"), Gateway: gateway}); err != nil {
		t.Errorf("one-node cluster with its gateway: %v", err)
	}
}
