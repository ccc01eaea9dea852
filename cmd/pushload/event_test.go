package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendPayloadIsFlaskJSON(t *testing.T) {
	got := string(appendPayload(nil, "chan-1234", 7, 1700000000123456789, ""))
	want := `{"channel_id": "chan-1234", "job_id": "chan-123-0000-4000-8000-000000000007", "user_id": 1, "status": "done", "errors": [], "result_url": "/api/v1/chart/data/qc-7", "ts_ns": 1700000000123456789, "n": 7}`
	if got != want {
		t.Fatalf("payload:\n got %s\nwant %s", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	padded := string(appendPayload(nil, "c", 1, 2, "xxxx"))
	if !strings.HasSuffix(padded, `, "n": 1, "pad": "xxxx"}`) {
		t.Fatalf("padded payload %s", padded)
	}
}

func TestParseFrame(t *testing.T) {
	payload := string(appendPayload(nil, "chan-1", 42, 123456789, "pad"))
	cases := []struct {
		name        string
		in          string
		ok          bool
		id, channel string
		n, ts       int64
		hasN, hasTS bool
	}{
		{"pushbridge frame", `{"id":"1700000000-17",` + payload[1:], true, "1700000000-17", "chan-1", 42, 123456789, true, true},
		{"compact", `{"id":"1-2","channel_id":"c","ts_ns":5,"n":6}`, true, "1-2", "c", 6, 5, true, true},
		{"nested values skipped", `{"errors":[{"message":"a \"}\" b"}],"x":{"n":9},"n":3,"ts_ns":4,"id":"9-9"}`, true, "9-9", "", 3, 4, true, true},
		{"no tool keys", `{"id":"1-1","status":"done"}`, true, "1-1", "", 0, 0, false, false},
		{"empty object", `{}`, true, "", "", 0, 0, false, false},
		{"float n is not ours", `{"n":1.5,"ts_ns":1}`, true, "", "", 0, 1, false, true},
		{"not an object", `[1,2]`, false, "", "", 0, 0, false, false},
		{"truncated", `{"id":"1-1","n":`, false, "", "", 0, 0, false, false},
		{"garbage", `{"id" "x"}`, false, "", "", 0, 0, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := parseFrame([]byte(tc.in))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if string(f.id) != tc.id || string(f.channel) != tc.channel || f.n != tc.n || f.tsNs != tc.ts || f.hasN != tc.hasN || f.hasTS != tc.hasTS {
				t.Fatalf("got id=%q channel=%q n=%d(%v) ts=%d(%v), want id=%q channel=%q n=%d(%v) ts=%d(%v)",
					f.id, f.channel, f.n, f.hasN, f.tsNs, f.hasTS, tc.id, tc.channel, tc.n, tc.hasN, tc.ts, tc.hasTS)
			}
		})
	}
}

// FuzzParseFrame checks parseFrame against encoding/json on valid objects.
func FuzzParseFrame(f *testing.F) {
	f.Add(`{"id":"1-2","channel_id": "c", "n": 3, "ts_ns": 4}`)
	f.Add(`{"a":[1,{"b":"}"}],"n":-5}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		fr, ok := parseFrame([]byte(s))
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &m) != nil {
			return // parseFrame may accept some invalid JSON; it must not crash
		}
		if !ok {
			t.Fatalf("valid object %q rejected", s)
		}
		if raw, present := m["n"]; present {
			var n int64
			if json.Unmarshal(raw, &n) == nil && !strings.ContainsAny(string(raw), ".eE") && len(strings.TrimLeft(string(raw), "-")) <= 19 {
				if !fr.hasN || fr.n != n {
					t.Fatalf("%q: n = %d (%v), want %d", s, fr.n, fr.hasN, n)
				}
			}
		}
	})
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		a, b uint64
		ok   bool
	}{
		{"1700000000-17", 1700000000, 17, true},
		{"1795388654686-0", 1795388654686, 0, true},
		{"-1", 0, 0, false},
		{"1-", 0, 0, false},
		{"a-1", 0, 0, false},
		{"12", 0, 0, false},
	} {
		a, b, ok := parseID([]byte(tc.in))
		if ok != tc.ok || a != tc.a || b != tc.b {
			t.Errorf("parseID(%q) = %d, %d, %v; want %d, %d, %v", tc.in, a, b, ok, tc.a, tc.b, tc.ok)
		}
	}
}
