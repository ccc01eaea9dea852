package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

func openLog(t *testing.T, cfg Config) (*Log, jetstream.JetStream) {
	t.Helper()
	_, nc := embeddedtest.Run(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, js
}

func TestOpenCreatesStreamWithLimitsAndEpoch(t *testing.T) {
	ctx := context.Background()
	l, js := openLog(t, Config{MaxMsgsPerChannel: 7, MaxAge: time.Hour})
	s, err := js.Stream(ctx, "PUSHBRIDGE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxMsgsPerSubject != 7 || cfg.MaxAge != time.Hour || cfg.MaxMsgs != 1_000_000 || !cfg.AllowDirect ||
		cfg.MaxConsumers != 10_000 || !cfg.DenyDelete || cfg.Subjects[0] != "push.>" || cfg.Duplicates != 10*time.Minute {
		t.Fatalf("stream config %+v", cfg)
	}
	if l.Epoch() == 0 || l.Epoch() > MaxEpoch || cfg.Metadata[EpochMetadataKey] != fmt.Sprint(l.Epoch()) {
		t.Fatalf("epoch %d, metadata %v", l.Epoch(), cfg.Metadata)
	}
	// Reopening with other limits updates them and keeps the epoch.
	l2, err := Open(ctx, js, Config{MaxMsgsPerChannel: 9, MaxAge: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if l2.Epoch() != l.Epoch() {
		t.Fatalf("epoch changed on reopen: %d -> %d", l.Epoch(), l2.Epoch())
	}
	info, _ := js.Stream(ctx, "PUSHBRIDGE")
	if got := info.CachedInfo().Config; got.MaxMsgsPerSubject != 9 || got.MaxAge != 2*time.Hour {
		t.Fatalf("limits not updated: %+v", got)
	}
}

func TestOpenAdoptsForeignStream(t *testing.T) {
	ctx := context.Background()
	_, nc := embeddedtest.Run(t)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PUSHBRIDGE", Subjects: []string{"push.>"}}); err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Epoch() == 0 {
		t.Fatal("no epoch assigned to a stream created elsewhere")
	}
}

func TestConfigValidation(t *testing.T) {
	for name, c := range map[string]Config{
		"stream with dot":  {Stream: "A.B"},
		"prefix wildcard":  {SubjectPrefix: "push.*"},
		"empty prefix tok": {SubjectPrefix: "push..x"},
		"replicas":         {Replicas: 7},
		"tiny msg":         {MaxMsgSize: 10},
	} {
		c.setDefaults()
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAppendDedupeAndRead(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t, Config{})
	var seqs []uint64
	for i := 0; i < 600; i++ { // more than one direct-get batch
		ch := "a"
		if i%3 == 0 {
			ch = "b"
		}
		res, err := l.Append(ctx, ch, []byte(fmt.Sprintf(`{"i":%d}`, i)), AppendOptions{MsgID: fmt.Sprint("m", i)})
		if err != nil {
			t.Fatal(err)
		}
		if ch == "a" {
			seqs = append(seqs, res.Seq)
		}
	}
	dup, err := l.Append(ctx, "a", []byte(`{"i":1}`), AppendOptions{MsgID: "m1"})
	if err != nil || !dup.Duplicate || dup.Seq != seqs[0] {
		t.Fatalf("duplicate: %+v %v", dup, err)
	}
	var got []uint64
	if err := l.Read(ctx, "a", 0, 0, func(ev Event) error {
		if ev.Channel != "a" {
			t.Fatalf("channel %q", ev.Channel)
		}
		got = append(got, ev.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Fatalf("read %d events, want %d", len(got), len(seqs))
	}
	// Bounded both ways.
	got = got[:0]
	_ = l.Read(ctx, "a", seqs[10], seqs[20], func(ev Event) error { got = append(got, ev.Seq); return nil })
	if fmt.Sprint(got) != fmt.Sprint(seqs[11:21]) {
		t.Fatalf("range read %v, want %v", got, seqs[11:21])
	}
	// Nothing after the end is not an error.
	if err := l.Read(ctx, "a", seqs[len(seqs)-1], 0, func(Event) error { t.Fatal("event after the end"); return nil }); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	if err := l.Read(ctx, "a", 0, 0, func(Event) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback error not returned: %v", err)
	}
	if _, err := l.Msg(ctx, 1_000_000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Msg beyond the end: %v", err)
	}
	ev, err := l.Msg(ctx, seqs[0])
	if err != nil || ev.Channel != "a" {
		t.Fatalf("Msg: %+v %v", ev, err)
	}
	if _, err := l.Append(ctx, "a.b", []byte(`{}`), AppendOptions{}); !errors.Is(err, ErrInvalidChannel) {
		t.Fatalf("append to an invalid channel: %v", err)
	}
}

func TestReadFromTimeAndHeaders(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t, Config{})
	if _, err := l.Append(ctx, "h", []byte(`{"old":1}`), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	mid := time.Now()
	res, err := l.Append(ctx, "h", []byte(`{"new":1}`), AppendOptions{Header: nats.Header{RedisIDHeader: []string{"5-0"}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	_ = l.ReadFrom(ctx, "h", mid, 0, func(ev Event) error { got = append(got, ev); return nil })
	if len(got) != 1 || got[0].Seq != res.Seq || got[0].Header.Get(RedisIDHeader) != "5-0" {
		t.Fatalf("read from time: %+v", got)
	}
}

func TestFollowDeliversInOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, _ := openLog(t, Config{})
	for i := 0; i < 5; i++ {
		if _, err := l.Append(ctx, fmt.Sprint("c", i%2), []byte(`{}`), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan Event, 100)
	done := make(chan error, 1)
	go func() { done <- l.Follow(ctx, 2, FollowOptions{}, func(ev Event) { got <- ev }) }()
	for want := uint64(2); want <= 6; want++ {
		if want == 6 {
			if _, err := l.Append(ctx, "c9", []byte(`{"live":true}`), AppendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case ev := <-got:
			if ev.Seq != want {
				t.Fatalf("seq %d, want %d", ev.Seq, want)
			}
			if want == 6 && (ev.Channel != "c9" || ev.Pending != 0) {
				t.Fatalf("live event %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %d", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not stop")
	}
}

func TestIDsAndChannels(t *testing.T) {
	id := ID{Epoch: 1795388654, Seq: 42}
	if id.String() != "1795388654-42" {
		t.Fatal(id.String())
	}
	a, b, err := SplitID(id.String())
	if err != nil || a != id.Epoch || b != id.Seq {
		t.Fatalf("split %d %d %v", a, b, err)
	}
	for _, bad := range []string{"", "-", "1-", "-1", "a-1", "1-b", "1-2-3", "1234567890123456-1", "1-12345678901"} {
		if _, _, err := SplitID(bad); err == nil {
			t.Errorf("SplitID(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"6494e437-0b2a-4c8c-9d7e-2f1f5c3b6a11", "guest-abc123", "x"} {
		if err := ValidateChannel(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a*", ">", "a b", "a\tb", strings.Repeat("x", 300), "\xff"} {
		if err := ValidateChannel(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for name, tc := range map[string]struct {
		data string
		err  error
	}{
		"object": {`{"a":1}`, nil}, "spaces": {" {} ", nil}, "array": {`[1]`, ErrPayloadNotObject},
		"string": {`"x"`, ErrPayloadNotObject}, "broken": {`{"a"`, ErrPayloadNotJSON}, "empty": {``, ErrPayloadNotJSON},
		"big": {`{"a":"` + strings.Repeat("x", 100) + `"}`, ErrPayloadTooLarge},
	} {
		if err := ValidatePayload([]byte(tc.data), 64); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", name, err, tc.err)
		}
	}
	// Depth: the object is level 1; every value inside counts, a scalar or
	// an empty container included; brackets inside strings do not.
	nested := func(levels int, inner string) string {
		return `{"a":` + strings.Repeat("[", levels) + inner + strings.Repeat("]", levels) + `}`
	}
	for name, tc := range map[string]struct {
		data string
		err  error
	}{
		"deepest empty array": {nested(MaxPayloadDepth-1, ""), nil},
		"array too deep":      {nested(MaxPayloadDepth, ""), ErrPayloadTooDeep},
		"deepest scalar":      {nested(MaxPayloadDepth-2, "1"), nil},
		"scalar too deep":     {nested(MaxPayloadDepth-1, "1"), ErrPayloadTooDeep},
		"key too deep":        {nested(MaxPayloadDepth-2, `{"k":1}`), ErrPayloadTooDeep},
		"brackets in strings": {`{"a":"` + strings.Repeat("[{", 300) + `\"]"}`, nil},
	} {
		if err := ValidatePayload([]byte(tc.data), 0); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", name, err, tc.err)
		}
	}
}

func FuzzSplitID(f *testing.F) {
	f.Add("1795388654-42")
	f.Add("1-")
	f.Fuzz(func(t *testing.T, s string) {
		a, b, err := SplitID(s)
		if err != nil {
			return
		}
		if again := (ID{Epoch: a, Seq: b}).String(); again != s && !strings.HasPrefix(s, "0") && !strings.Contains(s, "-0") {
			t.Fatalf("%q -> %d-%d -> %q", s, a, b, again)
		}
	})
}
