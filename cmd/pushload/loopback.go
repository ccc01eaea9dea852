package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
)

// errNotLoopback is wrapped by checkLoopback's errors: the load tool only
// ever sends traffic to this machine.
var errNotLoopback = errors.New("not a loopback address (only 127.0.0.0/8, ::1 and localhost are allowed)")

// loopbackHost checks that host (a name or an IP, no port) is loopback and
// returns it with "localhost" replaced by 127.0.0.1, so that dials use
// IPv4 and the spread source addresses apply.
func loopbackHost(host string) (string, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return "127.0.0.1", nil
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%q: %w", host, errNotLoopback)
	}
	return h, nil
}

// loopbackHostPort checks a host:port address.
func loopbackHostPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	h, err := loopbackHost(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(h, port), nil
}

// loopbackURL parses a URL whose host must be loopback and whose scheme one
// of schemes, and returns it with localhost rewritten.
func loopbackURL(raw string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", raw, err)
	}
	ok := false
	for _, s := range schemes {
		if u.Scheme == s {
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("url %q: scheme must be one of %s", raw, strings.Join(schemes, ", "))
	}
	h, err := loopbackHost(u.Hostname())
	if err != nil {
		return nil, err
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if p := u.Port(); p != "" {
		u.Host = h + ":" + p
	} else {
		u.Host = h
	}
	return u, nil
}

// sourceAddrs returns k loopback source addresses 127.0.0.2, 127.0.0.3, …
// for dialing an IPv4 loopback target; each gives its own range of
// ephemeral ports, so that one address's ~28,000 ports are not the ceiling.
// For an IPv6 target it returns nil (the kernel picks ::1).
func sourceAddrs(target string, k int) []net.IP {
	if ip := net.ParseIP(strings.Trim(target, "[]")); ip == nil || ip.To4() == nil {
		return nil
	}
	k = min(max(k, 1), 253*256)
	out := make([]net.IP, k)
	for i := range out {
		// 127.0.<i/253>.<2..254>: never .0, .1 (the usual target) or .255.
		out[i] = net.IPv4(127, 0, byte(i/253), byte(2+i%253))
	}
	return out
}

// autoSourceAddrs picks how many source addresses n connections need,
// keeping each under 20,000 ports.
func autoSourceAddrs(n int) int { return max(4, (n+19_999)/20_000) }

// raiseNoFile raises this process's open-files limit to at least want, up
// to what the kernel allows, and returns the resulting soft limit.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := lim
	next.Cur = want
	if next.Max < want {
		next.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Not privileged to raise the hard limit: take what it allows.
		next = lim
		next.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, fmt.Errorf("setrlimit: %w", err2)
		}
		return next.Cur, fmt.Errorf("setrlimit to %d: %w (raised to the hard limit %d)", want, err, lim.Max)
	}
	return next.Cur, nil
}
