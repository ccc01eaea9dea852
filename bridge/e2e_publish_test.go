package bridge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

func publisherToken(t *testing.T, patterns any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"publish": patterns}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPublishAPI(t *testing.T) {
	g := startGateway(t, gatewayOptions{cfg: Config{MaxPayloadBytes: 1024}})
	sub := g.dial("team-a", "")
	post := func(path, tok, body string, hdr map[string]string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, g.http.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: body %q is not JSON", path, b)
		}
		return resp.StatusCode, out
	}
	pub := publisherToken(t, []string{"team-*"})
	const path = "/api/v1/channels/team-a/events"

	code, out := post(path, pub, `{"job_id": "1", "status": "done"}`, map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k1"})
	if code != http.StatusCreated || out["duplicate"] != false {
		t.Fatalf("publish: %d %v", code, out)
	}
	id := out["id"].(string)
	if got := string(sub.next(5 * time.Second)); got != `{"id":"`+id+`","job_id":"1","status":"done"}` {
		t.Fatalf("frame %s", got)
	}
	code, out = post(path, pub, `{"job_id": "1", "status": "done"}`, map[string]string{"Idempotency-Key": "k1"})
	if code != http.StatusOK || out["duplicate"] != true || out["id"] != id {
		t.Fatalf("retry with the same key: %d %v", code, out)
	}
	sub.expectNothing(100 * time.Millisecond)

	for _, tc := range []struct {
		name, path, tok, body string
		status                int
		reason                string
	}{
		{"browser token", path, token(t, "team-a", nil), `{}`, 403, "not_a_publisher"},
		{"no token", path, "", `{}`, 401, "cookie_missing"},
		{"wrong secret", path, "eyJhbGciOiJIUzI1NiJ9.eyJwdWJsaXNoIjpbIioiXX0.bad", `{}`, 401, "signature_invalid"},
		{"pattern mismatch", "/api/v1/channels/other/events", pub, `{}`, 403, "channel_not_allowed"},
		{"bad channel", "/api/v1/channels/a*b/events", pub, `{}`, 400, "invalid_channel"},
		{"not an object", path, pub, `[1,2]`, 400, "invalid_payload"},
		{"not JSON", path, pub, `{"a":`, 400, "invalid_payload"},
		{"too large", path, pub, `{"a":"` + strings.Repeat("x", 2000) + `"}`, 413, "payload_too_large"},
		{"nested too deeply", path, pub, nestedPayload(eventlog.MaxPayloadDepth), 400, "invalid_payload"},
		{"unknown endpoint", "/api/v1/channels/team-a/other", pub, `{}`, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := post(tc.path, tc.tok, tc.body, nil)
			if code != tc.status || out["reason"] != tc.reason || out["error"] == "" {
				t.Fatalf("got %d %v, want %d %s", code, out, tc.status, tc.reason)
			}
		})
	}
	resp, err := http.Get(g.http.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	wildcard := publisherToken(t, "*")
	if code, out := post("/api/v1/channels/anything/events", wildcard, `{}`, nil); code != 201 {
		t.Fatalf("wildcard publisher: %d %v", code, out)
	}
	sub.expectNothing(50 * time.Millisecond)

	// The deepest payload the API accepts is one the gateway can frame:
	// accepted means delivered.
	deepest := nestedPayload(eventlog.MaxPayloadDepth - 1)
	code, out = post(path, pub, deepest, nil)
	if code != http.StatusCreated {
		t.Fatalf("deepest payload: %d %v", code, out)
	}
	if got, want := string(sub.next(5*time.Second)), `{"id":"`+out["id"].(string)+`",`+strings.TrimPrefix(deepest, "{"); got != want {
		t.Fatalf("deepest payload frame\n got %s\nwant %s", got, want)
	}
}

// nestedPayload is an object whose member "a" is arrays nested levels
// deep: its deepest value is at depth levels+1.
func nestedPayload(levels int) string {
	return `{"a":` + strings.Repeat("[", levels) + strings.Repeat("]", levels) + `}`
}

// TestPublishSizeLimits: JetStream counts the headers stored with an event
// against the stream's maximum message size. The default cap leaves room
// for them; a payload that fits a cap set to the maximum but not the stream
// is refused with 413, not 503 "retry".
func TestPublishSizeLimits(t *testing.T) {
	const maxMsgSize = 4096
	pub := publisherToken(t, "*")
	post := func(g *gateway, body, key string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, g.http.URL+"/api/v1/channels/big/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+pub)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	payload := func(n int) string { return `{"a":"` + strings.Repeat("x", n-8) + `"}` }
	key := strings.Repeat("k", maxMsgIDLength)

	t.Run("default cap", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{logCfg: eventlog.Config{MaxMsgSize: maxMsgSize}})
		limit := maxMsgSize - publishHeaderRoom
		if code, out := post(g, payload(limit), key); code != http.StatusCreated {
			t.Fatalf("payload at the default cap with the longest key: %d %v, want 201", code, out)
		}
		code, out := post(g, payload(maxMsgSize-16), "")
		if code != http.StatusRequestEntityTooLarge || out["reason"] != "payload_too_large" || !strings.Contains(out["error"].(string), fmt.Sprint(limit)) {
			t.Fatalf("payload over the default cap: %d %v, want 413 naming the limit %d", code, out, limit)
		}
	})
	t.Run("cap at the stream maximum", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{cfg: Config{MaxPayloadBytes: maxMsgSize}, logCfg: eventlog.Config{MaxMsgSize: maxMsgSize}})
		code, out := post(g, payload(maxMsgSize-16), key)
		if code != http.StatusRequestEntityTooLarge || out["reason"] != "payload_too_large" || !strings.Contains(out["error"].(string), "maximum message size") {
			t.Fatalf("payload that fits the cap but not the stream: %d %v, want 413", code, out)
		}
		if v := metricValue(t, g, `pushbridge_http_publishes_total{result="payload_too_large"}`); v != 1 {
			t.Fatalf("payload_too_large publishes %v, want 1", v)
		}
	})
}
