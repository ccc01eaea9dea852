package configs

import (
	"fmt"
	"strings"
	"testing"
)

// TestRegionKeysConvert: the multi-region keys an operator writes reach
// the embedded server and the event log unchanged.
func TestRegionKeysConvert(t *testing.T) {
	cfg, _, err := Load(writeFile(t, `{"jwtSecret":"`+secret+`",
		"nats": {"embedded": {
			"serverName": "eu1", "listen": "127.0.0.1:4222", "domain": "eu", "tags": ["region:eu"],
			"cluster": {"name": "eu", "listen": "127.0.0.1:6222", "routes": ["nats-route://127.0.0.1:6222"]},
			"gateway": {"name": "eu", "listen": "127.0.0.1:7222", "remotes": {"us": ["nats://10.0.0.1:7222"]}},
			"leafNode": {"listen": "127.0.0.1:7422", "remotes": ["nats-leaf://10.0.0.2:7422"]}
		}},
		"stream": {"replicas": 1, "mirror": {"name": "PUSHBRIDGE_EU", "originDomain": "us", "placementCluster": "eu", "placementTags": ["region:eu"]}}
	}`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Embedded(nil)
	if e.Domain != "eu" || fmt.Sprint(e.Tags) != "[region:eu]" || e.Gateway.Name != "eu" || e.Gateway.Listen != "127.0.0.1:7222" ||
		fmt.Sprint(e.Gateway.Remotes) != "map[us:[nats://10.0.0.1:7222]]" || e.LeafNode.Listen != "127.0.0.1:7422" ||
		fmt.Sprint(e.LeafNode.Remotes) != "[nats-leaf://10.0.0.2:7422]" || fmt.Sprint(e.Cluster.Routes) != "[nats-route://127.0.0.1:6222]" {
		t.Fatalf("embedded config %+v", e)
	}
	l := cfg.EventLog(nil)
	m := l.Mirror
	if m == nil || m.Name != "PUSHBRIDGE_EU" || m.OriginDomain != "us" || m.Placement == nil ||
		m.Placement.Cluster != "eu" || fmt.Sprint(m.Placement.Tags) != "[region:eu]" || l.Replicas != 1 || l.Stream != "PUSHBRIDGE" {
		t.Fatalf("event log config %+v, mirror %+v", l, m)
	}
}

// TestRegionKeysValidate: region settings that cannot work are refused at
// load time, naming their key.
func TestRegionKeysValidate(t *testing.T) {
	for _, tc := range []struct{ file, key string }{
		{`{"nats":{"embedded":{"serverName":"a","listen":"127.0.0.1:1","cluster":{"name":"a","listen":"127.0.0.1:2"}}}}`, "nats.embedded.cluster.routes"},
		{`{"nats":{"embedded":{"listen":"127.0.0.1:1","gateway":{"listen":"127.0.0.1:3"}}}}`, "nats.embedded.gateway.name"},
		{`{"nats":{"embedded":{"listen":"127.0.0.1:1","gateway":{"name":"a","listen":"127.0.0.1:3"}}}}`, "nats.embedded.gateway.name"},
		{`{"nats":{"embedded":{"serverName":"a","listen":"127.0.0.1:1","cluster":{"name":"a","listen":"127.0.0.1:2","routes":["nats-route://127.0.0.1:2"]},"gateway":{"name":"b","listen":"127.0.0.1:3"}}}}`, "nats.embedded.gateway.name"},
		{`{"stream":{"mirror":{"name":"PUSHBRIDGE"}}}`, "stream.mirror.name"},
		{`{"nats":{"embedded":{"domain":"edge"}},"stream":{"mirror":{"originDomain":"edge"}}}`, "stream.mirror.originDomain"},
	} {
		file := `{"jwtSecret":"` + secret + `",` + strings.TrimPrefix(tc.file, "{")
		_, _, err := Load(writeFile(t, file), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: error %v does not name %q", tc.file, err, tc.key)
		}
	}
}
