package configs

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pushbridge/pushbridge/embedded"
)

// deploymentEnv is what the deployment files (docker-compose.yml,
// docs/deployment.md) put in the environment: the per-node values and the
// secrets that the example configs leave out on purpose.
var deploymentEnv = map[string]string{
	"JWT_SECRET":                        secret,
	"PUSHBRIDGE_NATS_SERVER_NAME":       "pb1",
	"PUSHBRIDGE_NATS_EMBEDDED_PASSWORD": "client-password",
	"PUSHBRIDGE_NATS_CLUSTER_PASSWORD":  "route-password",
	"PUSHBRIDGE_NATS_PASSWORD":          "client-password",
	"PUSHBRIDGE_NATS_ROUTES":            "nats-route://pb1:6222,nats-route://pb2:6222,nats-route://pb3:6222",
}

// selfContained examples load with no environment at all.
var selfContained = []string{"superset.json", "standalone.json"}

// exampleConfigs lists every JSON file under configs/.
func exampleConfigs(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".json") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestExampleConfigs loads every example config with the real loader and
// the deployment environment, so they can never rot: valid, no unknown
// keys, an embedded server that nats-server options accept, and the
// topology each file is named for.
func TestExampleConfigs(t *testing.T) {
	files := exampleConfigs(t)
	for _, want := range append([]string{"cluster-node.json", "external-cluster.json", "region-origin.json",
		"region-mirror.json", "leaf-hub.json", "leaf-edge.json"}, selfContained...) {
		if !slices.Contains(files, want) {
			t.Errorf("example %s missing (have %v)", want, files)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			envs := []map[string]string{deploymentEnv}
			if slices.Contains(selfContained, f) {
				envs = append(envs, nil)
			}
			for _, e := range envs {
				c, src, err := Load(f, env(e))
				if err != nil {
					t.Fatalf("env %v: %v", e != nil, err)
				}
				for _, w := range src.Warnings {
					if strings.Contains(w, "unknown key") {
						t.Errorf("%s", w)
					}
				}
				if c.NATS.URL == "" {
					ec := c.Embedded(slog.New(slog.DiscardHandler))
					ec.StoreDir = t.TempDir()
					if _, err := embedded.New(ec); err != nil {
						t.Errorf("embedded server: %v", err)
					}
				}
				if check := topology[f]; check != nil {
					check(t, &c)
				}
			}
		})
	}
}

// topology checks that each deployment example configures what its name
// says.
var topology = map[string]func(t *testing.T, c *Config){
	"cluster-node.json": func(t *testing.T, c *Config) {
		e := c.NATS.Embedded
		if e.Cluster.Listen == "" || e.Listen == "" || e.Password == "" || e.Cluster.Password == "" || c.EventLog(nil).Replicas != 3 {
			t.Errorf("not a password-protected R3 embedded cluster node: %+v", e)
		}
	},
	"external-cluster.json": func(t *testing.T, c *Config) {
		if n := len(strings.Split(c.NATS.URL, ",")); n < 3 || c.NATS.Password == "" || c.Stream.Replicas != 3 {
			t.Errorf("not an R3 external cluster of 3+ servers: url %q, replicas %d", c.NATS.URL, c.Stream.Replicas)
		}
	},
	"region-origin.json": func(t *testing.T, c *Config) {
		g := c.NATS.Embedded.Gateway
		if g.Name == "" || g.Name != c.NATS.Embedded.Cluster.Name || len(g.Remotes) < 2 || c.Stream.Mirror != nil ||
			c.Stream.PlacementCluster != g.Name {
			t.Errorf("not an origin region: gateway %+v, placement %q", g, c.Stream.PlacementCluster)
		}
	},
	"region-mirror.json": func(t *testing.T, c *Config) {
		g := c.NATS.Embedded.Gateway
		m := c.Stream.Mirror
		if g.Name == "" || g.Name != c.NATS.Embedded.Cluster.Name || m == nil || m.Name == "" || m.PlacementCluster != g.Name || c.IngestEnabled() {
			t.Errorf("not a mirror region: gateway %+v, mirror %+v", g, m)
		}
	},
	"leaf-hub.json": func(t *testing.T, c *Config) {
		e := c.NATS.Embedded
		if e.Domain == "" || e.LeafNode.Listen == "" || e.Password == "" {
			t.Errorf("not a leaf hub: %+v", e)
		}
	},
	"leaf-edge.json": func(t *testing.T, c *Config) {
		e := c.NATS.Embedded
		m := c.Stream.Mirror
		if e.Domain == "" || len(e.LeafNode.Remotes) != 1 || m == nil || m.OriginDomain == "" || m.OriginDomain == e.Domain || c.IngestEnabled() {
			t.Errorf("not a leaf edge: %+v, mirror %+v", e, m)
		}
	},
}

// TestEdgeAndHubDomainsMatch: the edge mirrors from the hub's domain.
func TestEdgeAndHubDomainsMatch(t *testing.T) {
	hub, _, err := Load("leaf-hub.json", env(deploymentEnv))
	if err != nil {
		t.Fatal(err)
	}
	edge, _, err := Load("leaf-edge.json", env(deploymentEnv))
	if err != nil {
		t.Fatal(err)
	}
	if edge.Stream.Mirror.OriginDomain != hub.NATS.Embedded.Domain || edge.Stream.Name != hub.Stream.Name {
		t.Fatalf("edge mirrors %s in domain %q; hub has %s in %q", edge.Stream.Name, edge.Stream.Mirror.OriginDomain,
			hub.Stream.Name, hub.NATS.Embedded.Domain)
	}
}

var envNameRE = regexp.MustCompile(`\bPUSHBRIDGE_[A-Z0-9_]+\b`)

// notEnvVars are PUSHBRIDGE_* names in the deployment files that are not
// variables of the loader: a Caddyfile placeholder, stream and bucket names.
var notEnvVars = []string{"PUSHBRIDGE_UPSTREAMS", "PUSHBRIDGE_INGEST", "PUSHBRIDGE_EU_WEST", "PUSHBRIDGE_EDGE", "PUSHBRIDGE_MIRROR"}

// TestDeploymentFilesNameRealSettings: every config file that
// docker-compose.yml mounts exists and loads, and every PUSHBRIDGE_*
// variable that the compose file and the deployment guide name is one the
// loader reads.
func TestDeploymentFilesNameRealSettings(t *testing.T) {
	known := EnvVarNames()
	for _, doc := range []string{"../docker-compose.yml", "../Dockerfile", "../docs/deployment.md", "Caddyfile"} {
		body, err := os.ReadFile(doc)
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		for _, name := range envNameRE.FindAllString(string(body), -1) {
			if !slices.Contains(known, name) && !slices.Contains(notEnvVars, name) {
				t.Errorf("%s names %s, which the loader does not read", doc, name)
			}
		}
	}
	compose, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	mounts := regexp.MustCompile(`\./configs/([A-Za-z0-9_./-]+)`).FindAllStringSubmatch(string(compose), -1)
	if len(mounts) == 0 {
		t.Fatal("docker-compose.yml mounts no file from configs/")
	}
	for _, m := range mounts {
		if _, err := os.Stat(m[1]); err != nil {
			t.Errorf("docker-compose.yml mounts ./configs/%s: %v", m[1], err)
		}
	}
}

// TestNATSClusterConfParses: the example nats-server configuration for
// the external cluster is one nats-server accepts, with JetStream on and
// the pushbridge user in a JetStream-enabled account.
func TestNATSClusterConfParses(t *testing.T) {
	t.Setenv("NATS_SERVER_NAME", "nats-1")
	t.Setenv("PUSHBRIDGE_NATS_PASSWORD", "client-password")
	t.Setenv("NATS_SYS_PASSWORD", "sys-password")
	opts, err := server.ProcessConfigFile("nats-cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream || opts.ServerName != "nats-1" || opts.Cluster.Name == "" || len(opts.Routes) != 3 {
		t.Fatalf("jetstream %v, name %q, cluster %q, routes %d", opts.JetStream, opts.ServerName, opts.Cluster.Name, len(opts.Routes))
	}
	ext, _, err := Load("external-cluster.json", env(deploymentEnv))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range opts.Users {
		if u.Username == ext.NATS.User && u.Password == "client-password" && u.Account != nil {
			found = true
		}
	}
	if !found {
		t.Fatalf("no user %q in nats-cluster.conf", ext.NATS.User)
	}
}

// TestDeploymentGuideNamesRealKeys: every dotted config key the deployment
// guide names (`nats.embedded.cluster.listen`, `stream.mirror.name`, …)
// exists in Config.
func TestDeploymentGuideNamesRealKeys(t *testing.T) {
	body, err := os.ReadFile("../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	keyRE := regexp.MustCompile("`((?:nats|stream|sockets|replay|ingest|publish|statsd|redis)(?:\\.[a-zA-Z]+)+)")
	seen := 0
	for _, m := range keyRE.FindAllStringSubmatch(string(body), -1) {
		seen++
		typ := reflect.TypeOf(Config{})
		for _, part := range strings.Split(m[1], ".") {
			for typ.Kind() == reflect.Pointer {
				typ = typ.Elem()
			}
			i, ok := fieldsByJSONName(typ)[part]
			if !ok {
				t.Errorf("docs/deployment.md names %s: no key %q", m[1], part)
				break
			}
			typ = typ.Field(i).Type
		}
	}
	if seen < 10 {
		t.Fatalf("only %d keys found; is the pattern still right?", seen)
	}
}
