package eventlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// TestRegionMirrorKeepsChannelLimit: a mirror created before the origin
// trims a channel keeps the same per-channel history as the origin (a
// mirror has its own limits; the origin's removals are not mirrored), and
// Head on the mirror is the origin's last sequence.
func TestRegionMirrorKeepsChannelLimit(t *testing.T) {
	ctx := context.Background()
	_, nc := embeddedtest.Run(t)
	js, _ := jetstream.New(nc)
	origin, err := Open(ctx, js, Config{MaxMsgsPerChannel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := origin.Append(ctx, "c", []byte(`{"i":0}`), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	mirror, err := Open(ctx, js, Config{MaxMsgsPerChannel: 2, Mirror: &Mirror{Name: "PB_REGION_C"}})
	if err != nil {
		t.Fatal(err)
	}
	// waitMirror waits until the mirror holds seq, so that it receives
	// every event before the origin trims it.
	waitMirror := func(seq uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := mirror.State(ctx)
			if err == nil && st.LastSeq >= seq {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("mirror at %+v (%v), want %d", st, err, seq)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitMirror(1)
	var last uint64
	for i := 1; i < 6; i++ {
		res, err := origin.Append(ctx, "c", []byte(fmt.Sprintf(`{"i":%d}`, i)), AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Seq
		if head, err := mirror.Head(ctx); err != nil || head != last {
			t.Fatalf("mirror head %d (%v), want the origin's %d", head, err, last)
		}
		waitMirror(last)
	}
	read := func(l *Log) string {
		var got []uint64
		if err := l.Read(ctx, "c", 0, 0, func(ev Event) error { got = append(got, ev.Seq); return nil }); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	want := read(origin)
	if got := read(mirror); got != want {
		t.Fatalf("mirror holds %s of channel c, origin %s", got, want)
	}
}
