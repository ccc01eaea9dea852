package bridge

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// TestReconnectStormCoalesced: many clients resume at once with last_ids
// beyond the ring; their JetStream replays are coalesced into shared scans
// and every client is made whole, exactly.
func TestReconnectStormCoalesced(t *testing.T) {
	const clients, channels, perChannel = 300, 100, 20
	g := startGateway(t, gatewayOptions{cfg: Config{RingBytes: 1}})
	ctx := context.Background()
	published := make(map[string][]uint64)
	for i := 0; i < channels*perChannel; i++ {
		ch := fmt.Sprintf("storm-%d", i%channels)
		res, err := g.log.Append(ctx, ch, []byte(fmt.Sprintf(`{"i":%d}`, i)), eventlog.AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		published[ch] = append(published[ch], res.Seq)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		ch := fmt.Sprintf("storm-%d", i%channels)
		behind := 1 + i%(perChannel-1) // spread over the recent past
		seqs := published[ch]
		from := len(seqs) - 1 - behind
		want := idsOf(g, seqs[from+1:])
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := g.dialRaw(cookieHeader("async-token", token(t, ch, nil)), g.log.ID(seqs[from]).String())
			if err != nil {
				errs <- err
				return
			}
			for k, id := range want {
				select {
				case f := <-c.frames:
					if got := frameID(t, f); got != id {
						errs <- fmt.Errorf("%s: event %d is %s, want %s", ch, k, got, id)
						return
					}
				case <-time.After(20 * time.Second):
					errs <- fmt.Errorf("%s: timed out at event %d of %d", ch, k, len(want))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d clients made whole in %s with %d coalesced scans", clients, time.Since(start), g.srv.coalescer.scans.Load())
	if g.srv.coalescer.scans.Load() == 0 {
		t.Fatal("no replay was coalesced")
	}
}
