package bridge

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// authenticator turns a browser's token cookie into its channel, and a
// publisher's bearer token into the channels it may publish to. It is
// immutable after construction and safe for concurrent use.
type authenticator struct {
	cookieName string
	channelKey string
	algorithms []string
	// keys maps an algorithm family ("HS", "RS", "PS", "ES", "Ed") to the
	// verification key derived from the configured secret.
	keys   map[string]any
	parser *jwt.Parser
	now    func() time.Time
}

func newAuthenticator(c *Config) (*authenticator, error) {
	a := &authenticator{
		cookieName: c.JWTCookieName,
		channelKey: c.JWTChannelIDKey,
		algorithms: c.JWTAlgorithms,
		keys:       make(map[string]any),
		now:        time.Now,
	}
	for _, alg := range c.JWTAlgorithms {
		family := algorithmFamily(alg)
		if _, done := a.keys[family]; done {
			continue
		}
		key, err := verificationKey(family, c.JWTSecret)
		if err != nil {
			return nil, fmt.Errorf("jwtSecret: for %s: %w", alg, err)
		}
		a.keys[family] = key
	}
	// exp and nbf are enforced when present, with no leeway, as the Node
	// server's jsonwebtoken does; a token without exp is accepted.
	a.parser = jwt.NewParser(jwt.WithValidMethods(c.JWTAlgorithms), jwt.WithTimeFunc(func() time.Time { return a.now() }))
	return a, nil
}

func algorithmFamily(alg string) string {
	if alg == "EdDSA" {
		return "Ed"
	}
	return alg[:2]
}

// MinSecretLength is Superset's minimum for GLOBAL_ASYNC_QUERIES_JWT_SECRET.
const MinSecretLength = 32

func verificationKey(family, secret string) (any, error) {
	switch family {
	case "HS":
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("%d characters, Superset and pushbridge require at least %d", len(secret), MinSecretLength)
		}
		return []byte(secret), nil
	case "RS", "PS":
		return jwt.ParseRSAPublicKeyFromPEM([]byte(secret))
	case "ES":
		return jwt.ParseECPublicKeyFromPEM([]byte(secret))
	case "Ed":
		key, err := jwt.ParseEdPublicKeyFromPEM([]byte(secret))
		if err != nil {
			return nil, err
		}
		return key.(crypto.PublicKey), nil
	}
	return nil, fmt.Errorf("unknown algorithm family %q", family)
}

// verify checks a token's algorithm, signature and time claims and returns
// its claims, or a refusal that names the exact reason.
func (a *authenticator) verify(raw string) (jwt.MapClaims, *refusal) {
	claims := jwt.MapClaims{}
	token, err := a.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		return a.keys[algorithmFamily(t.Method.Alg())], nil
	})
	if err == nil && token.Valid {
		return claims, nil
	}
	alg := ""
	if token != nil && token.Method != nil {
		alg = token.Method.Alg()
	} else if token != nil {
		alg, _ = token.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, refuse(reasonTokenMalformed, "token is not a well-formed JWT: %v", err)
	case alg != "" && !slices.Contains(a.algorithms, alg):
		return nil, refuse(reasonAlgorithm, "token is signed with %s; allowed are %s (jwtAlgorithms)", alg, strings.Join(a.algorithms, ", "))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, refuse(reasonSignature, "token signature does not verify with jwtSecret: the secret differs from the one that signed it (Superset's GLOBAL_ASYNC_QUERIES_JWT_SECRET)")
	case errors.Is(err, jwt.ErrTokenExpired):
		exp, _ := claims.GetExpirationTime()
		if exp == nil {
			return nil, refuse(reasonExpired, "token expired")
		}
		return nil, refuse(reasonExpired, "token expired at %s, %s ago", exp.UTC().Format(time.RFC3339), a.now().Sub(exp.Time).Round(time.Second))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		nbf, _ := claims.GetNotBefore()
		if nbf == nil {
			return nil, refuse(reasonNotYetValid, "token not valid yet")
		}
		return nil, refuse(reasonNotYetValid, "token not valid before %s, %s from now", nbf.UTC().Format(time.RFC3339), nbf.Sub(a.now()).Round(time.Second))
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return nil, refuse(reasonClaimInvalid, "token claims are invalid: %v", err)
	}
	return nil, refuse(reasonTokenMalformed, "token rejected: %v", err)
}

// channel authenticates an upgrade request: the token cookie must verify and
// name a valid channel.
func (a *authenticator) channel(r *http.Request) (string, *refusal) {
	cookie, err := r.Cookie(a.cookieName)
	if err != nil || cookie.Value == "" {
		return "", refuse(reasonCookieMissing, "no %q cookie in the upgrade request (jwtCookieName); the WebSocket must be served from Superset's host so that the browser sends the cookie, and GLOBAL_ASYNC_QUERIES_JWT_COOKIE_NAME must be the same", a.cookieName)
	}
	claims, ref := a.verify(cookie.Value)
	if ref != nil {
		return "", ref
	}
	v, ok := claims[a.channelKey]
	if !ok || v == nil || v == "" {
		return "", refuse(reasonClaimMissing, "token has no %q claim (jwtChannelIdKey)", a.channelKey)
	}
	channel, ok := v.(string)
	if !ok {
		return "", refuse(reasonClaimInvalid, "token claim %q is a %T, not a string", a.channelKey, v)
	}
	if err := eventlog.ValidateChannel(channel); err != nil {
		return "", refuse(reasonClaimInvalid, "token claim %q: %v", a.channelKey, err)
	}
	return channel, nil
}

// publishPatterns authenticates a publish request: a bearer token that
// verifies and carries claim (a string or a list of channel patterns). A
// browser's channel token has no such claim and can never publish.
func (a *authenticator) publishPatterns(r *http.Request, claim string) ([]string, *refusal) {
	auth := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || raw == "" {
		return nil, refuse(reasonCookieMissing, "no bearer token in the Authorization header")
	}
	claims, ref := a.verify(strings.TrimSpace(raw))
	if ref != nil {
		return nil, ref
	}
	var patterns []string
	switch v := claims[claim].(type) {
	case string:
		patterns = []string{v}
	case []any:
		for _, p := range v {
			s, ok := p.(string)
			if !ok {
				return nil, refuse(reasonClaimInvalid, "token claim %q holds a %T, not a channel pattern", claim, p)
			}
			patterns = append(patterns, s)
		}
	case nil:
		return nil, refuse(reasonNotPublisher, "token has no %q claim: it is not a publisher token", claim)
	default:
		return nil, refuse(reasonClaimInvalid, "token claim %q is a %T, not a list of channel patterns", claim, v)
	}
	return patterns, nil
}
