package eventlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// TestMirrorKeepsSequencesAndEpoch: a log reading a mirror sees the
// origin's events under the origin's sequences and epoch, and appends
// through it land in the origin.
func TestMirrorKeepsSequencesAndEpoch(t *testing.T) {
	ctx := context.Background()
	_, nc := embeddedtest.Run(t)
	js, _ := jetstream.New(nc)
	origin, err := Open(ctx, js, Config{MaxMsgsPerChannel: 2})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := 0; i < 6; i++ {
		res, err := origin.Append(ctx, fmt.Sprint("m", i%2), []byte(fmt.Sprintf(`{"i":%d}`, i)), AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, res.Seq)
	}
	mirror, err := Open(ctx, js, Config{Mirror: &Mirror{Name: "PB_REGION_B"}})
	if err != nil {
		t.Fatal(err)
	}
	if mirror.Epoch() != origin.Epoch() || mirror.ReadStream() != "PB_REGION_B" || mirror.Stream() != "PUSHBRIDGE" {
		t.Fatalf("mirror epoch %d (origin %d), read %s, append %s", mirror.Epoch(), origin.Epoch(), mirror.ReadStream(), mirror.Stream())
	}
	// An append through the mirror's log goes to the origin.
	res, err := mirror.Append(ctx, "m0", []byte(`{"i":6}`), AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seqs = append(seqs, res.Seq)
	// The mirror catches up and serves channel m0's retained events (the
	// origin kept 2 per channel) under the origin's sequences.
	want := fmt.Sprint([]uint64{seqs[4], seqs[6]})
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []uint64
		_ = mirror.Read(ctx, "m0", 0, 0, func(ev Event) error { got = append(got, ev.Seq); return nil })
		if fmt.Sprint(got) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror read %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lag, err := mirror.MirrorLag(ctx); err != nil || lag != 0 {
		t.Fatalf("lag %d %v", lag, err)
	}
	// Reopening the mirror is idempotent.
	if _, err := Open(ctx, js, Config{Mirror: &Mirror{Name: "PB_REGION_B"}}); err != nil {
		t.Fatal(err)
	}
}
