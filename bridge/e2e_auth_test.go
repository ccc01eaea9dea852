package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestUpgradeRefusals checks every refusal: the HTTP status, the metric and
// a log line naming the exact reason.
func TestUpgradeRefusals(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{AllowedOrigins: []string{"https://superset.example.com"}}})
	okOrigin := http.Header{"Origin": []string{"https://superset.example.com"}}
	signed := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hs := func(claims jwt.MapClaims) string { return signed(jwt.SigningMethodHS256, []byte(testSecret), claims) }
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()
	noneToken := signed(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"channel": "c"})

	cases := []struct {
		name   string
		header http.Header
		status int
		reason string
		detail string
	}{
		{"no cookie", okOrigin, 401, reasonCookieMissing, `no \"async-token\" cookie`},
		{"other cookie", withCookie(okOrigin, "session", hs(jwt.MapClaims{"channel": "c"})), 401, reasonCookieMissing, "jwtCookieName"},
		{"garbage token", withCookie(okOrigin, "async-token", "not-a-jwt"), 401, reasonTokenMalformed, "well-formed"},
		{"wrong secret", withCookie(okOrigin, "async-token", signed(jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-characters!!"), jwt.MapClaims{"channel": "c"})), 401, reasonSignature, "GLOBAL_ASYNC_QUERIES_JWT_SECRET"},
		{"expired", withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"channel": "c", "exp": past})), 401, reasonExpired, "token expired at " + time.Unix(past, 0).UTC().Format(time.RFC3339)},
		{"not yet valid", withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"channel": "c", "nbf": future})), 401, reasonNotYetValid, "not valid before"},
		{"no channel claim", withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"sub": "1"})), 401, reasonClaimMissing, `no \"channel\" claim`},
		{"empty channel claim", withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"channel": ""})), 401, reasonClaimMissing, "jwtChannelIdKey"},
		{"numeric channel claim", withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"channel": 42})), 401, reasonClaimInvalid, "float64, not a string"},
		{"channel with a dot", withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"channel": "a.b"})), 401, reasonClaimInvalid, "contains '.'"},
		{"HS512 not allowed", withCookie(okOrigin, "async-token", signed(jwt.SigningMethodHS512, []byte(testSecret), jwt.MapClaims{"channel": "c"})), 401, reasonAlgorithm, "signed with HS512; allowed are HS256"},
		{"alg none", withCookie(okOrigin, "async-token", noneToken), 401, reasonAlgorithm, "signed with none"},
		{"wrong origin", withCookie(http.Header{"Origin": []string{"https://evil.example.com"}}, "async-token", hs(jwt.MapClaims{"channel": "c"})), 403, reasonOrigin, `origin \"https://evil.example.com\" is not in allowedOrigins`},
		{"no origin", withCookie(http.Header{}, "async-token", hs(jwt.MapClaims{"channel": "c"})), 403, reasonOrigin, "no Origin header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := g.dialRaw(tc.header, "")
			if err == nil {
				t.Fatal("upgrade succeeded")
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("status %v, want %d", resp, tc.status)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.HasPrefix(string(body), tc.reason+":") {
				t.Errorf("body %q does not start with the reason %q", body, tc.reason)
			}
			g.waitLog(2*time.Second, "upgrade refused", "reason="+tc.reason, tc.detail)
		})
	}
	got := metricValue(t, g, `pushbridge_upgrades_rejected_total{reason="token_expired"}`)
	if got != 1 {
		t.Errorf("token_expired refusals counted %v, want 1", got)
	}
	// A valid token from an allowed origin still connects.
	c, _, err := g.dialRaw(withCookie(okOrigin, "async-token", hs(jwt.MapClaims{"channel": "c", "exp": future})), "")
	if err != nil {
		t.Fatalf("valid upgrade refused: %v", err)
	}
	seq := g.publish("c", `{"a":1}`)
	if got := frameID(t, c.next(5*time.Second)); got != g.log.ID(seq).String() {
		t.Fatalf("id %s", got)
	}
}

func withCookie(h http.Header, name, value string) http.Header {
	out := h.Clone()
	out.Add("Cookie", name+"="+value)
	return out
}

// TestPublicKeyAlgorithms checks that ES256 tokens verify against a PEM
// public key given as jwtSecret.
func TestPublicKeyAlgorithms(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	g := startGateway(t, gatewayOptions{cfg: Config{JWTSecret: pub, JWTAlgorithms: []string{"ES256"}}})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"channel": "ec"}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.dialRaw(cookieHeader("async-token", tok), ""); err != nil {
		t.Fatalf("ES256 token refused: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"channel": "ec"}).SignedString(other)
	if _, resp, err := g.dialRaw(cookieHeader("async-token", bad), ""); err == nil || resp.StatusCode != 401 {
		t.Fatalf("token signed by another key accepted (%v)", err)
	}
}

func TestConfigRefusesWeakSecretsAndNone(t *testing.T) {
	for name, cfg := range map[string]Config{
		"short secret":  {JWTSecret: "short"},
		"none":          {JWTSecret: testSecret, JWTAlgorithms: []string{"none"}},
		"unknown alg":   {JWTSecret: testSecret, JWTAlgorithms: []string{"XY256"}},
		"bad RSA key":   {JWTSecret: testSecret, JWTAlgorithms: []string{"RS256"}},
		"pong too soon": {JWTSecret: testSecret, PingInterval: time.Second, PongTimeout: time.Millisecond},
	} {
		cfg.setDefaults()
		if err := cfg.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzVerifyToken feeds arbitrary cookie values to the authenticator: it
// must never panic, and nothing but a token signed with the secret may
// yield a channel.
func FuzzVerifyToken(f *testing.F) {
	cfg := Config{JWTSecret: testSecret}
	cfg.setDefaults()
	auth, err := newAuthenticator(&cfg)
	if err != nil {
		f.Fatal(err)
	}
	good := token(f, "chan", nil)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJjaGFubmVsIjoiYyJ9.")
	f.Add("a.b.c")
	f.Add(good[:len(good)-2] + "xx")
	f.Fuzz(func(t *testing.T, value string) {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.Header.Set("Cookie", "async-token="+value)
		channel, ref := auth.channel(r)
		if ref == nil && value != good {
			// Only a valid signature with the secret passes.
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(value, claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
				jwt.WithValidMethods([]string{"HS256"})); err != nil {
				t.Fatalf("accepted %q (channel %q) that does not verify: %v", value, channel, err)
			}
		}
		if ref != nil && ref.status() != http.StatusUnauthorized {
			t.Fatalf("status %d for a token problem", ref.status())
		}
	})
}
