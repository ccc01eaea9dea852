package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minSecretLength is Superset's minimum for GLOBAL_ASYNC_QUERIES_JWT_SECRET.
const minSecretLength = 32

// channelToken mints a browser token as Superset's Flask side does: HS256
// over the shared secret, with the channel under channelKey.
func channelToken(secret, channelKey, channel string, ttl time.Duration) (string, error) {
	if len(secret) < minSecretLength {
		return "", errors.New("--secret is shorter than 32 characters (Superset refuses such secrets)")
	}
	now := time.Now()
	claims := jwt.MapClaims{channelKey: channel, "sub": "1", "iat": now.Unix()}
	if ttl > 0 {
		claims["exp"] = now.Add(ttl).Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign channel token: %w", err)
	}
	return s, nil
}

// publisherToken mints a bearer token for pushbridge's HTTP publish API:
// HS256 with claim publish: ["*"].
func publisherToken(secret, claim string, ttl time.Duration) (string, error) {
	if len(secret) < minSecretLength {
		return "", errors.New("--secret is shorter than 32 characters")
	}
	now := time.Now()
	claims := jwt.MapClaims{claim: []string{"*"}, "sub": "pushload", "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign publisher token: %w", err)
	}
	return s, nil
}
