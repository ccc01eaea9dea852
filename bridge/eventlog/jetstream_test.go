package eventlog

import (
	"context"
	"testing"

	"github.com/pushbridge/pushbridge/embedded/embeddedtest"
)

// TestReadThroughADomain: a log opened through a JetStream domain
// (nats.domain) replays with batched direct gets. Through
// jetstream.NewWithDomain every read failed with "no responders".
func TestReadThroughADomain(t *testing.T) {
	ctx := context.Background()
	_, nc := embeddedtest.RunWith(t, embeddedtest.Options{Domain: "hub"})
	js, err := NewJetStream(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"n":1}`, `{"n":2}`} {
		if _, err := l.Append(ctx, "a", []byte(body), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := l.Read(ctx, "a", 0, 0, func(ev Event) error { got = append(got, string(ev.Data)); return nil }); err != nil {
		t.Fatalf("read through domain hub: %v", err)
	}
	if len(got) != 2 || got[0] != `{"n":1}` || got[1] != `{"n":2}` {
		t.Fatalf("read %q", got)
	}
}
