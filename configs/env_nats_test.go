package configs

import (
	"strings"
	"testing"
)

// TestEmbeddedSecretsFromEnv: the embedded server's listener credentials
// and leaf remotes come from the environment, so a config file shared by
// every node holds no secret.
func TestEmbeddedSecretsFromEnv(t *testing.T) {
	p := writeFile(t, `{"jwtSecret":"`+secret+`","nats":{"embedded":{
		"serverName":"a","listen":"127.0.0.1:4222","user":"app",
		"cluster":{"name":"c","listen":"127.0.0.1:6222","user":"route","routes":["nats-route://127.0.0.1:6222"]}}}}`)
	c, src, err := Load(p, env(map[string]string{
		"PUSHBRIDGE_NATS_EMBEDDED_PASSWORD": "client-pw",
		"PUSHBRIDGE_NATS_CLUSTER_PASSWORD":  "route-pw",
		"PUSHBRIDGE_NATS_EMBEDDED_TOKEN":    "tok",
		"PUSHBRIDGE_NATS_LEAF_REMOTE":       "nats-leaf://u:p@hub:7422,nats-leaf://u:p@hub2:7422",
		"PUSHBRIDGE_NATS_EMBEDDED_DOMAIN":   "edge-7",
	}))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Embedded(nil)
	if e.Username != "app" || e.Password != "client-pw" || e.Token != "tok" ||
		e.Cluster.Username != "route" || e.Cluster.Password != "route-pw" || e.Domain != "edge-7" ||
		len(e.LeafNode.Remotes) != 1 || e.LeafNode.Remotes[0] != "nats-leaf://u:p@hub:7422,nats-leaf://u:p@hub2:7422" {
		t.Fatalf("embedded %+v", e)
	}
	if got := strings.Join(src.Env, ","); !strings.Contains(got, "PUSHBRIDGE_NATS_CLUSTER_PASSWORD") {
		t.Fatalf("env applied %s", got)
	}
	c, _, err = Load(p, env(map[string]string{
		"PUSHBRIDGE_NATS_EMBEDDED_USER": "other", "PUSHBRIDGE_NATS_EMBEDDED_PASSWORD": "x",
		"PUSHBRIDGE_NATS_CLUSTER_USER": "r2", "PUSHBRIDGE_NATS_CLUSTER_PASSWORD": "y",
	}))
	if err != nil || c.NATS.Embedded.User != "other" || c.NATS.Embedded.Cluster.User != "r2" {
		t.Fatalf("users from env: %v %+v", err, c.NATS.Embedded)
	}
}
