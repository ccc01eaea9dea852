package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Superset's Redis: superset-websocket's
// options (host, port, db, username, password, ssl, validateHostname) and
// what Superset's Flask side supports besides (a URL, a CA file, Sentinel).
type RedisConfig struct {
	// Addr is host:port. Ignored when URL or SentinelAddrs are set.
	Addr     string
	DB       int
	Username string
	Password string
	// TLS turns TLS on (superset-websocket's ssl).
	TLS bool
	// SkipHostnameCheck verifies the certificate chain but not the host
	// name (superset-websocket's validateHostname: false).
	SkipHostnameCheck bool
	// CAFile verifies the server with these CAs instead of the system's.
	CAFile string
	// URL is a redis:// or rediss:// URL; it replaces Addr, DB and the
	// credentials.
	URL string
	// SentinelAddrs and SentinelMaster switch to Redis Sentinel.
	SentinelAddrs    []string
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string
}

// NewRedisClient builds the client. It does not connect.
func NewRedisClient(c RedisConfig) (redis.UniversalClient, error) {
	var tlsCfg *tls.Config
	if c.TLS || c.CAFile != "" {
		var err error
		if tlsCfg, err = c.tlsConfig(); err != nil {
			return nil, err
		}
	}
	username := c.Username
	if c.Password == "" {
		// superset-websocket sends the username only with a password.
		username = ""
	}
	// The mirror's XREAD blocks for up to redisStreamReadBlockMs; the
	// client's own timeouts stay short for everything else.
	const dialTimeout, rwTimeout = 5 * time.Second, 5 * time.Second
	switch {
	case len(c.SentinelAddrs) > 0:
		if c.SentinelMaster == "" {
			return nil, errors.New("redis: sentinel addresses without a master name")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.SentinelMaster,
			SentinelAddrs:    c.SentinelAddrs,
			SentinelUsername: c.SentinelUsername,
			SentinelPassword: c.SentinelPassword,
			Username:         username,
			Password:         c.Password,
			DB:               c.DB,
			TLSConfig:        tlsCfg,
			DialTimeout:      dialTimeout,
			ReadTimeout:      rwTimeout,
			WriteTimeout:     rwTimeout,
			Protocol:         2,
		}), nil
	case c.URL != "":
		opts, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		if tlsCfg != nil {
			if opts.TLSConfig != nil {
				tlsCfg.ServerName = opts.TLSConfig.ServerName
			}
			opts.TLSConfig = tlsCfg
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = dialTimeout, rwTimeout, rwTimeout
		opts.Protocol = 2
		return redis.NewClient(opts), nil
	}
	return redis.NewClient(&redis.Options{
		Addr:         c.Addr,
		DB:           c.DB,
		Username:     username,
		Password:     c.Password,
		TLSConfig:    tlsCfg,
		DialTimeout:  dialTimeout,
		ReadTimeout:  rwTimeout,
		WriteTimeout: rwTimeout,
		Protocol:     2,
	}), nil
}

func (c RedisConfig) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis ca file %s: no PEM certificates", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.SkipHostnameCheck {
		// Verify the chain ourselves, without the host name.
		roots := cfg.RootCAs
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("redis: server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, cert := range cs.PeerCertificates[1:] {
				inter.AddCert(cert)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return cfg, nil
}
