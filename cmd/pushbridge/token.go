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
	configPath := fs.String("config", "", "config file holding jwtSecret, jwtAlgorithms, jwtChannelIdKey and publish.claim (the environment works too)")
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
	cfg, err := cliConfig(*configPath, e)
	if err != nil {
		return err
	}
	spec, err := tokenSpecOf(&cfg, *secret)
	if err != nil {
		return err
	}
	tok, err := spec.mint(*channel, publish, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

// cliConfig loads the configuration for a command that may not need the
// JWT secret: it is not required, but everything else is validated, and a
// configuration that does not load is an error, never silently replaced by
// the defaults.
func cliConfig(path string, e env) (configs.Config, error) {
	cfg, _, err := configs.LoadWith(path, e.lookupEnv, configs.LoadOptions{SecretOptional: true})
	if err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

// tokenSpec is how the gateway configured by a configuration verifies
// tokens, and so how the CLI mints them.
type tokenSpec struct {
	secret string
	// method signs: the first HS* algorithm of jwtAlgorithms.
	method jwt.SigningMethod
	// channelKey is jwtChannelIdKey; publishClaim is publish.claim.
	channelKey, publishClaim string
}

// tokenSpecOf takes the secret (explicit, else jwtSecret), the signing
// algorithm and the claim names from cfg.
func tokenSpecOf(cfg *configs.Config, explicitSecret string) (tokenSpec, error) {
	spec := tokenSpec{secret: explicitSecret, channelKey: cfg.JWTChannelIDKey, publishClaim: cfg.Publish.Claim}
	if spec.secret == "" {
		spec.secret = cfg.JWTSecret
	}
	if spec.secret == "" {
		return spec, errors.New("no signing secret: pass --secret, or configure jwtSecret (JWT_SECRET)")
	}
	for _, alg := range cfg.JWTAlgorithms {
		if strings.HasPrefix(alg, "HS") {
			if spec.method = jwt.GetSigningMethod(alg); spec.method != nil {
				break
			}
		}
	}
	if spec.method == nil {
		return spec, fmt.Errorf("jwtAlgorithms %v has no HS* algorithm: tokens signed with a shared secret would be refused; mint them with your private key (publish accepts --token)", cfg.JWTAlgorithms)
	}
	return spec, nil
}

// mint signs a token for a browser channel or, with publish patterns, for
// publishing.
func (spec tokenSpec) mint(channel string, publish []string, ttl time.Duration) (string, error) {
	if len(spec.secret) < configs.MinSecretLength {
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
		claims[spec.channelKey] = channel
	} else {
		claims[spec.publishClaim] = publish
		claims["sub"] = "publisher"
	}
	return jwt.NewWithClaims(spec.method, claims).SignedString([]byte(spec.secret))
}

// mintToken signs an HS256 token with the default claim names (tests).
func mintToken(secret, channel string, publish []string, ttl time.Duration, channelKey, publishClaim string) (string, error) {
	return tokenSpec{secret: secret, method: jwt.SigningMethodHS256, channelKey: channelKey, publishClaim: publishClaim}.mint(channel, publish, ttl)
}
