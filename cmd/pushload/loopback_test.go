package main

import (
	"errors"
	"testing"
)

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		url  string
		host string
		ok   bool
	}{
		{"ws://127.0.0.1:8080/", "127.0.0.1:8080", true},
		{"ws://localhost:8080/x", "127.0.0.1:8080", true},
		{"ws://127.9.9.9/", "127.9.9.9", true},
		{"ws://[::1]:80/", "[::1]:80", true},
		{"ws://10.0.0.1:8080/", "", false},
		{"ws://example.com/", "", false},
		{"ws://192.168.1.1/", "", false},
		{"http://127.0.0.1/", "", false}, // wrong scheme for a WebSocket target
	} {
		u, err := loopbackURL(tc.url, "ws")
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.url, err, tc.ok)
			continue
		}
		if tc.ok && u.Host != tc.host {
			t.Errorf("%s: host %s, want %s", tc.url, u.Host, tc.host)
		}
	}
	if _, err := loopbackHostPort("8.8.8.8:53"); !errors.Is(err, errNotLoopback) {
		t.Errorf("8.8.8.8: %v", err)
	}
	o := &options{url: "ws://127.0.0.1:1/", conns: 1, channels: 1, secret: testSecret, rate: 1, duration: 1, maxRuntime: 1,
		maxEvents: 1, readBuffer: 1024, dialConc: 1, publish: "redis", redisAddr: "10.1.1.1:6379"}
	if err := o.validate(); err == nil {
		t.Error("a non-loopback Redis address was accepted")
	}
}

func TestSourceAddrs(t *testing.T) {
	a := sourceAddrs("127.0.0.1", 300)
	if len(a) != 300 || a[0].String() != "127.0.0.2" || a[252].String() != "127.0.0.254" || a[253].String() != "127.0.1.2" {
		t.Fatalf("addrs %v %v %v", a[0], a[252], a[253])
	}
	if sourceAddrs("::1", 3) != nil {
		t.Fatal("IPv6 targets get no source addresses")
	}
}
