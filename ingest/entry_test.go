package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/ingest/redistest"
)

// FuzzParseEntryMatchesDecoder: the scanning parser finds the channel that
// a full decode finds (keys compared exactly, the last duplicate winning, as
// JSON.parse does), and gives the same verdict.
func FuzzParseEntryMatchesDecoder(f *testing.F) {
	f.Add(redistest.FlaskEvent("c", "j", 1, "done"))
	f.Add(`{"a": {"channel_id": "x"}, "channel_id": "y", "b": ["]", "}"]}`)
	f.Add(`{"channel_id": "x", "channel_id": 2}`)
	f.Add(`{"channel_id": "x", "channel_id": null}`)
	f.Add(`{"chann\u0065l_id": "a\u0062c"}`)
	f.Add(`{"channel_id":"\"q"}`)
	f.Add(` { "n" : -1.5e3 , "channel_id" : "z" } `)
	f.Add(`{"Channel_id": "x"}`)
	f.Fuzz(func(t *testing.T, data string) {
		channel, _, reason := parseEntry(map[string]any{"data": data}, 4096)
		// A map, not a struct: encoding/json matches struct fields
		// case-insensitively, JSON.parse (and Superset's reader) does not.
		var members map[string]json.RawMessage
		if !strings.HasPrefix(strings.TrimLeft(data, " \t\n\r"), "{") || json.Unmarshal([]byte(data), &members) != nil {
			if reason != skipNotJSON && reason != skipNotObject && reason != skipTooLarge {
				t.Fatalf("%q: reason %q for a payload encoding/json rejects", data, reason)
			}
			return
		}
		var want string
		member := members["channel_id"]
		switch {
		case len(member) == 0 || string(member) == "null":
			if reason != skipNoChannel {
				t.Fatalf("%q: reason %q, want %q", data, reason, skipNoChannel)
			}
		case json.Unmarshal(member, &want) != nil:
			if reason != skipChannelType {
				t.Fatalf("%q: reason %q, want %q", data, reason, skipChannelType)
			}
		case eventlog.ValidateChannel(want) != nil || !utf8.Valid(member):
			// encoding/json turns invalid UTF-8 into U+FFFD; the parser
			// keeps the bytes, which no channel name holds.
			if reason != skipInvalidChannel {
				t.Fatalf("%q: reason %q, want %q", data, reason, skipInvalidChannel)
			}
		case reason != "" || channel != want:
			t.Fatalf("%q: channel %q reason %q, want channel %q", data, channel, reason, want)
		}
	})
}

func BenchmarkParseEntry(b *testing.B) {
	values := map[string]any{"data": redistest.FlaskEvent("1c9c3b0a-7a5e-4c47-9a4f-ff5e3b4f0f55", "6f8f3c2e-1b7d-4a0e-9d57-1f1b2c3d4e5f", 7, "done")}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, reason := parseEntry(values, 0); reason != "" {
			b.Fatal(reason)
		}
	}
}
