package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/configs"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runToken(_ context.Context, e env) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	configPath := fs.String("config", "", "config file holding jwtSecret (JWT_SECRET also works)")
	secret := fs.String("secret", "", "signing secret (default: jwtSecret from the configuration)")
	channel := fs.String("channel", "", "mint a browser token for this channel")
	var publish stringList
	fs.Var(&publish, "publish", "mint a publisher token for channels matching this pattern (repeatable; \"*\" for all)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime (0: no exp claim)")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	if (*channel == "") == (len(publish) == 0) {
		fmt.Fprintln(e.stderr, "give exactly one of --channel or --publish")
		return errUsage
	}
	s, err := signingSecret(*secret, *configPath, e)
	if err != nil {
		return err
	}
	tok, err := mintToken(s, *channel, publish, *ttl, "channel", "publish")
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

// signingSecret returns the explicit secret or the configured jwtSecret.
func signingSecret(explicit, configPath string, e env) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	cfg, _, err := configs.Load(configPath, e.lookupEnv)
	if err != nil {
		return "", fmt.Errorf("no --secret, and the configuration does not load: %w", err)
	}
	return cfg.JWTSecret, nil
}

// mintToken signs an HS256 token for a browser channel or for publishing.
func mintToken(secret, channel string, publish []string, ttl time.Duration, channelKey, publishClaim string) (string, error) {
	if len(secret) < configs.MinSecretLength {
		return "", errors.New("the secret is shorter than 32 characters")
	}
	claims := jwt.MapClaims{"iat": time.Now().Unix()}
	if ttl > 0 {
		claims["exp"] = time.Now().Add(ttl).Unix()
	}
	if channel != "" {
		if err := eventlog.ValidateChannel(channel); err != nil {
			return "", err
		}
		claims[channelKey] = channel
	} else {
		claims[publishClaim] = publish
		claims["sub"] = "publisher"
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
