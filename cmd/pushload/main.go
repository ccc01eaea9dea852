// Command pushload is pushbridge's load tool. It drives any server that
// speaks Superset's async-query WebSocket protocol (pushbridge,
// superset-websocket): it opens many WebSocket connections with cookie
// JWTs, publishes events through NATS, pushbridge's HTTP API or Redis the
// way Superset's Flask side does, and measures latency, throughput, memory
// and per-connection loss, duplication and reordering. It also runs the two
// baselines that bound what pushbridge can reach on a machine.
//
// Usage:
//
//	pushload idle        [flags]   N idle connections: server memory per connection
//	pushload fanout      [flags]   fixed rate: throughput and latency
//	pushload ramp        [flags]   rising rate: the highest rate within a p99 bound
//	pushload reconnect   [flags]   K clients drop and resume with last_id at once
//	pushload slow        [flags]   clients that never read, against the others' p99
//	pushload baseline-ws [flags]   bare gorilla/websocket server (no NATS)
//	pushload baseline-js [flags]   the JetStream pipeline alone
//
// Every target must be on this machine (loopback), and every run is bounded
// in count and duration. See docs/loadtool.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage reports bad flags (the flag package has said why).
var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, name string, args []string, e env) error
}

// env is what a command gets from the process.
type env struct {
	lookupEnv func(string) (string, bool)
	stdout    io.Writer
	stderr    io.Writer
}

func commands() []command {
	return []command{
		{"idle", "open N connections and hold them: server memory per connection", runClientScenario},
		{"fanout", "publish at a fixed rate: throughput, latency, loss", runClientScenario},
		{"ramp", "raise the rate in steps: the highest rate whose p99 stays under a bound", runClientScenario},
		{"reconnect", "K clients drop and resume with last_id at once: time until whole", runClientScenario},
		{"slow", "clients that never read: the others' p99, and are they disconnected", runClientScenario},
		{"baseline-ws", "bare gorilla/websocket server writing prepared frames (no NATS)", runBaselineWSCommand},
		{"baseline-js", "the JetStream pipeline alone: sustained events/s", runBaselineJSCommand},
	}
}

// run dispatches to a command and returns the exit code.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	e := env{lookupEnv: lookupEnv, stdout: stdout, stderr: stderr}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		if err := c.run(ctx, c.name, args[1:], e); err != nil {
			if errors.Is(err, errUsage) {
				return 2
			}
			fmt.Fprintf(stderr, "pushload %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "pushload: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "pushload: load tool for Superset-protocol WebSocket servers (pushbridge, superset-websocket)")
	fmt.Fprintln(w, "\nUsage: pushload <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pushload <command> -h' for a command's flags. Targets must be loopback.")
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	return nil
}

// flagValues records every flag's value for the result file (the secret
// and tokens redacted).
func flagValues(fs *flag.FlagSet) map[string]any {
	out := make(map[string]any)
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "secret", "publish-token":
			if v != "" {
				v = "(redacted)"
			}
		}
		out[f.Name] = v
	})
	return out
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// scenarioFuncs are the client-side scenarios.
var scenarioFuncs = map[string]func(context.Context, *runner) error{
	"idle":      runIdle,
	"fanout":    runFanout,
	"ramp":      runRamp,
	"reconnect": runReconnect,
	"slow":      runSlow,
}

// runClientScenario parses a client-side scenario's flags, runs it within
// --max-runtime, prints the summary and writes the JSON result.
func runClientScenario(ctx context.Context, name string, args []string, e env) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := &options{}
	registerCommon(fs, o, e.lookupEnv)
	verbose := fs.Bool("v", false, "debug logging")
	cpuProfile := fs.String("cpuprofile", "", "write the load tool's own CPU profile to this file")
	switch name {
	case "ramp":
		fs.Float64Var(&o.rateStart, "rate-start", 1000, "first step's rate, events/s")
		fs.Float64Var(&o.rateStep, "rate-step", 1000, "rate added at each step, events/s")
		fs.Float64Var(&o.rateMax, "rate-max", 100_000, "last step's rate at most, events/s")
		fs.DurationVar(&o.stepDuration, "step-duration", 5*time.Second, "duration of each step")
		fs.DurationVar(&o.p99Bound, "p99-bound", 50*time.Millisecond, "a step passes when its p99 latency is at most this")
	case "reconnect":
		fs.IntVar(&o.reconnectK, "reconnect", 0, "clients that drop and resume (the first K; 0: all)")
		fs.IntVar(&o.behind, "behind", 50, "events published to each of their channels while they are away")
		fs.IntVar(&o.rounds, "rounds", 1, "storms to run")
		fs.IntVar(&o.reconnectConc, "reconnect-concurrency", 10_000, "resume handshakes in flight at once")
	case "slow":
		fs.IntVar(&o.slowK, "slow", 100, "clients that never read")
		fs.IntVar(&o.slowRcvBuf, "slow-rcvbuf", 4096, "SO_RCVBUF of the slow clients' sockets, bytes (0: kernel default)")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(e.stderr, err)
		return errUsage
	}
	log := newLogger(e.stderr, *verbose)
	ctx, cancel := context.WithTimeout(ctx, o.maxRuntime)
	defer cancel()
	r, err := newRunner(o, name, e.stdout, log)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	runErr := scenarioFuncs[name](ctx, r)
	r.close()
	r.res.Seconds = time.Since(start).Seconds()
	r.res.Flags = flagValues(fs)
	if runErr != nil {
		r.res.Error = runErr.Error()
	}
	if ctx.Err() != nil && runErr == nil {
		r.note("run cut short: %v", ctx.Err())
	}
	r.res.printSummary(e.stdout)
	if o.out != "" {
		if err := r.res.writeJSON(o.out); err != nil {
			return err
		}
	}
	return runErr
}

// runBaselineWSCommand serves the bare WebSocket baseline until
// interrupted or --duration passes.
func runBaselineWSCommand(ctx context.Context, name string, args []string, e env) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	secret, _ := e.lookupEnv("JWT_SECRET")
	listen := fs.String("listen", "127.0.0.1:18090", "listen address (loopback only)")
	fs.StringVar(&secret, "secret", secret, "JWT secret (default $JWT_SECRET)")
	cookie := fs.String("cookie-name", "async-token", "cookie carrying the browser JWT")
	key := fs.String("channel-key", "channel", "JWT claim naming the channel")
	queue := fs.Int("queue", 256, "frames queued per socket before it is closed as slow (a channel buffer of this many entries per socket)")
	coalesce := fs.Bool("coalesce", false, "write all queued frames in one writev (instead of one PreparedMessage write each)")
	duration := fs.Duration("duration", 30*time.Minute, "stop after this long (hard cap)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	addr, err := loopbackHostPort(*listen)
	if err != nil {
		fmt.Fprintln(e.stderr, "--listen:", err)
		return errUsage
	}
	if len(secret) < minSecretLength {
		fmt.Fprintln(e.stderr, "--secret (or $JWT_SECRET) must be at least 32 characters")
		return errUsage
	}
	if *duration <= 0 || *duration > hardRuntime {
		fmt.Fprintf(e.stderr, "--duration must be in (0, %s]\n", hardRuntime)
		return errUsage
	}
	if _, err := raiseNoFile(1 << 20); err != nil {
		slog.Warn("open-files limit", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	log := newLogger(e.stderr, false)
	b := newWSBaseline(secret, *cookie, *key, *queue, *coalesce, log)
	return serveBaselineWS(ctx, addr, b, nil)
}

// runBaselineJSCommand measures the JetStream pipeline alone.
func runBaselineJSCommand(ctx context.Context, name string, args []string, e env) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var o jsBaselineOptions
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to publish")
	fs.Float64Var(&o.rate, "rate", 0, "events per second (0: as fast as acknowledgements allow)")
	fs.IntVar(&o.channels, "channels", 2500, "channels (subjects push.<channel>)")
	fs.IntVar(&o.pad, "pad", 0, "bytes of padding added to each event")
	fs.BoolVar(&o.msgID, "msg-id", false, "set Nats-Msg-Id on every publish (as an ingest would)")
	fs.IntVar(&o.maxPending, "max-pending", 4000, "async publishes in flight")
	fs.StringVar(&o.storeDir, "store-dir", "", "JetStream store directory (default: a temporary directory, removed after)")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "how long to wait for the consumer to catch up")
	out := fs.String("out", "", "write the JSON result to this file")
	quiet := fs.Bool("quiet", false, "no progress line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case o.duration <= 0 || o.duration > hardRuntime:
		fmt.Fprintf(e.stderr, "--duration must be in (0, %s]\n", hardRuntime)
		return errUsage
	case o.channels < 1 || o.channels > maxChannels:
		fmt.Fprintln(e.stderr, "--channels out of range")
		return errUsage
	case o.maxPending < 1 || o.rate < 0 || o.pad < 0 || o.pad > 1<<20:
		fmt.Fprintln(e.stderr, "--max-pending, --rate or --pad out of range")
		return errUsage
	}
	// nats-server logs its start and stop at Info: keep warnings only.
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(ctx, o.duration+o.drain+time.Minute)
	defer cancel()
	progress := func(s string) {
		if !*quiet {
			fmt.Fprintln(e.stdout, s)
		}
	}
	start := time.Now()
	br, err := runBaselineJS(ctx, o, log, progress)
	res := &Result{Tool: "pushload", Scenario: name, StartedAt: start, Flags: flagValues(fs), Baseline: br, Publisher: "jetstream PublishAsync (in-process)"}
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		res.Error = err.Error()
	}
	res.printSummary(e.stdout)
	if *out != "" {
		if werr := res.writeJSON(*out); werr != nil {
			return werr
		}
	}
	return err
}

// sortedKeys is used by tests and reports that list maps in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
