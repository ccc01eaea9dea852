package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// testPKI writes a CA and a server certificate signed by it. With
// matching, the certificate names 127.0.0.1; otherwise another host.
func testPKI(t *testing.T, matching bool) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pushbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	if matching {
		srvTmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		srvTmpl.DNSNames = []string{"redis.elsewhere.example"}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("ca.pem", "CERTIFICATE", caDER), write("srv.pem", "CERTIFICATE", srvDER), write("srv.key", "EC PRIVATE KEY", keyDER), pool
}

// TestRedisTLS: the mirror reads a TLS-only Redis, verifying it with a CA
// file; a certificate for another host name is refused unless
// validateHostname is off (the chain is still verified).
func TestRedisTLS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		matching bool
		skipHost bool
		works    bool
	}{
		{"verified", true, false, true},
		{"wrong host refused", false, false, false},
		{"wrong host with validateHostname off", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caFile, certFile, keyFile, pool := testPKI(t, tc.matching)
			srv := redistest.StartTLS(t, certFile, keyFile, &tls.Config{RootCAs: pool, InsecureSkipVerify: !tc.matching})
			rdb, err := NewRedisClient(RedisConfig{Addr: srv.Addr(), TLS: true, CAFile: caFile, SkipHostnameCheck: tc.skipHost})
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = rdb.Ping(ctx).Err()
			if (err == nil) != tc.works {
				t.Fatalf("ping: %v, want success %v", err, tc.works)
			}
		})
	}
}

// TestRedisSentinel: with sentinel addresses and a master name the mirror
// finds the master through Sentinel.
func TestRedisSentinel(t *testing.T) {
	r := newRig(t, eventlog.Config{})
	sentinel := redistest.StartSentinel(t, r.redis.Addr())
	rdb, err := NewRedisClient(RedisConfig{SentinelAddrs: []string{sentinel.Addr()}, SentinelMaster: "mymaster"})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	m, err := New(Config{Start: "all", ReadBlock: 100 * time.Millisecond, Logger: quietLog(r.logs)}, rdb, r.events)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w := newWritten()
	xadd(t, r.rdb, w, 3, 30, 0)
	waitStored(t, r.events, 30, 20*time.Second)
	checkExactlyOnce(t, r.events, w)
}

func TestRedisURLAndAuth(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()
	for name, cfg := range map[string]RedisConfig{
		"url":                       {URL: "redis://:s3cret@" + srv.Addr() + "/2"},
		"username sent with a pass": {Addr: srv.Addr(), Username: "default", Password: "s3cret"},
	} {
		rdb, err := NewRedisClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		rdb.Close()
	}
	rdb, _ := NewRedisClient(RedisConfig{Addr: srv.Addr(), Username: "default"})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Error("no password accepted by a server that requires one")
	}
}
