package bridge

import (
	"strconv"
	"testing"
)

func TestParseLastID(t *testing.T) {
	const epoch = 1795388654
	for _, tc := range []struct {
		in   string
		kind resumeKind
		seq  uint64
	}{
		{"", resumeNone, 0},
		{"1795388654-42", resumeSeq, 42},
		{"1795388654-0", resumeSeq, 0},
		{"1795388654-9999999999", resumeSeq, 9999999999},
		{"1700000000-5", resumeEpochReset, 0},
		{"1895388654-5", resumeUnusable, 0},           // newer epoch
		{"1795388654686-0", resumeRedis, 0},           // a Redis id of the Node server
		{"1795388654-", resumeUnusable, 0},            // malformed
		{"-5", resumeUnusable, 0},                     // malformed
		{"abc", resumeUnusable, 0},                    // malformed
		{"1795388654-42-1", resumeUnusable, 0},        // malformed
		{"1795388654-12345678901", resumeUnusable, 0}, // 11 digits
		{"1234567890123456-1", resumeUnusable, 0},     // 16 digits
		{" 1795388654-1", resumeUnusable, 0},
		{"+1795388654-1", resumeUnusable, 0},
	} {
		rp := parseLastID(tc.in, epoch)
		if rp.kind != tc.kind || (tc.kind == resumeSeq && rp.seq != tc.seq) {
			t.Errorf("%q: kind %s seq %d, want %s %d", tc.in, rp.kind, rp.seq, tc.kind, tc.seq)
		}
	}
	rp := parseLastID("1795388654686-7", epoch)
	if rp.redisMs != 1795388654686 || rp.redisSeq != 7 {
		t.Fatalf("redis parts %d %d", rp.redisMs, rp.redisSeq)
	}
}

func TestRedisIDAfter(t *testing.T) {
	for _, tc := range []struct {
		id    string
		after bool
	}{
		{"100-1", false}, {"100-2", true}, {"101-0", true}, {"99-9", false}, {"100-0", false},
	} {
		if got, ok := redisIDAfter(tc.id, 100, 1); !ok || got != tc.after {
			t.Errorf("%s after 100-1: %v (%v)", tc.id, got, ok)
		}
	}
	if _, ok := redisIDAfter("junk", 1, 1); ok {
		t.Error("junk id parsed")
	}
}

// FuzzParseLastID: whatever a client sends, classification never panics,
// and an id the gateway formats parses back to its sequence.
func FuzzParseLastID(f *testing.F) {
	for _, s := range []string{"", "1795388654-42", "1795388654686-0", "x", "1-", "-1", "999999999999999-9999999999"} {
		f.Add(s, uint64(1795388654))
	}
	f.Fuzz(func(t *testing.T, raw string, epoch uint64) {
		if epoch == 0 || epoch > 9_999_999_999 {
			return
		}
		rp := parseLastID(raw, epoch)
		if rp.kind == resumeSeq {
			if strconv.FormatUint(epoch, 10)+"-"+strconv.FormatUint(rp.seq, 10) != raw {
				// Leading zeros are the only other accepted spelling.
				if raw[0] != '0' && !containsLeadingZeroSeq(raw) {
					t.Fatalf("%q parsed as seq %d of epoch %d", raw, rp.seq, epoch)
				}
			}
		}
		if rp.kind == resumeRedis && rp.redisMs < redisIDMinMs {
			t.Fatalf("%q classified as a Redis id", raw)
		}
	})
}

func containsLeadingZeroSeq(raw string) bool {
	for i := 0; i+1 < len(raw); i++ {
		if raw[i] == '-' {
			return raw[i+1] == '0'
		}
	}
	return false
}
