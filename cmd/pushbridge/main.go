// Command pushbridge is a real-time push gateway: it keeps WebSocket
// connections open to browsers and pushes every event published for a
// channel to every socket of that channel, in order and exactly once, also
// across reconnects, restarts and broker failovers. It is a drop-in
// replacement for Apache Superset's superset-websocket.
//
// Usage:
//
//	pushbridge serve   [--config FILE]   run the gateway (embedded NATS by default)
//	pushbridge ingest  [--config FILE]   run only the Redis Streams mirror
//	pushbridge publish ...               publish one event
//	pushbridge token   ...               mint a development token
//	pushbridge version                   print the version
//
// The load tool is a separate command, cmd/pushload (docs/loadtool.md).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what a subcommand gets from the process: arguments, environment
// and output streams, passed explicitly so tests can run commands in
// process.
type env struct {
	args      []string
	lookupEnv func(string) (string, bool)
	stdout    io.Writer
	stderr    io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway", runServe},
		{"ingest", "run only the Redis Streams mirror", runIngest},
		{"publish", "publish one event (HTTP API or NATS)", runPublish},
		{"token", "mint a development browser or publisher token", runToken},
		{"version", "print the version", runVersion},
	}
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	// superset-websocket is started as "node dist/index.js start".
	name := args[0]
	if name == "start" {
		name = "serve"
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, env{args: args[1:], lookupEnv: lookupEnv, stdout: stdout, stderr: stderr})
			if err != nil {
				if err == errUsage {
					return 2
				}
				fmt.Fprintf(stderr, "pushbridge %s: %v\n", name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "pushbridge: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "pushbridge: a real-time push gateway, drop-in for Superset's superset-websocket")
	fmt.Fprintln(w, "\nUsage: pushbridge <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pushbridge <command> -h' for a command's flags.")
}
