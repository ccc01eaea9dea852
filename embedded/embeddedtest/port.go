package embeddedtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports handed out by FreePort lie below Linux's default ephemeral range
// (32768–60999). A port taken from the kernel with "127.0.0.1:0" and closed
// again is an ephemeral one, and the kernel may give it to an outgoing
// connection (a route or gateway dial, a client) before the server that was
// meant to listen on it binds: "bind: address already in use". Ports below
// the range are never chosen for outgoing connections.
const (
	portLow  = 20000
	portHigh = 32000
)

var (
	portsMu     sync.Mutex
	portsIssued = map[int]bool{}
)

// FreePort returns a loopback TCP port that is free now, lies outside the
// ephemeral range and has not been returned before in this process: for a
// listener that other servers (routes, gateways, leaf remotes, a restarted
// server) must know before it starts.
func FreePort(tb testing.TB) int {
	tb.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := portLow + rand.IntN(portHigh-portLow)
		if portsIssued[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		portsIssued[p] = true
		return p
	}
	tb.Fatalf("no free loopback port in %d-%d", portLow, portHigh)
	return 0
}

// FreeAddr is FreePort as "127.0.0.1:PORT".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}
