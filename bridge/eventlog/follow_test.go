package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestFollowGivesUpStalledConsumer: a live consumer that stops delivering
// while the stream holds newer events (here its server-side consumer is
// paused; in a cluster, it was recreated on a crashed node) makes Follow
// return ErrStalled after StallTimeout, so the caller can start a new one;
// nothing is handed over after Follow returns. An idle stream is not a
// stall.
func TestFollowGivesUpStalledConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, js := openLog(t, Config{})
	if _, err := l.Append(ctx, "a", []byte(`{"n":1}`), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	got := make(chan Event, 16)
	done := make(chan error, 1)
	var returned atomic.Bool
	stall := 500 * time.Millisecond
	go func() {
		err := l.Follow(ctx, 1, FollowOptions{StallTimeout: stall}, func(ev Event) {
			if returned.Load() {
				t.Errorf("event %d handed over after Follow returned", ev.Seq)
			}
			got <- ev
		})
		returned.Store(true)
		done <- err
	}()
	select {
	case ev := <-got:
		if ev.Seq != 1 {
			t.Fatalf("first event %d", ev.Seq)
		}
	case <-ctx.Done():
		t.Fatal("no first event")
	}
	// Idle for several stall timeouts: still following.
	select {
	case err := <-done:
		t.Fatalf("Follow returned on an idle stream: %v", err)
	case <-time.After(4 * stall):
	}

	stream, err := js.Stream(ctx, l.ReadStream())
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	var consumer string
	for name := range names.Name() {
		consumer = name
	}
	if consumer == "" {
		t.Fatalf("no live consumer on the stream: %v", names.Err())
	}
	if _, err := js.PauseConsumer(ctx, l.ReadStream(), consumer, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, "a", []byte(`{"n":2}`), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	select {
	case err := <-done:
		took := time.Since(paused)
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("Follow returned %v, want ErrStalled", err)
		}
		// The event was stored at paused: it had at least half the
		// timeout to be delivered.
		if took < stall/2-100*time.Millisecond {
			t.Fatalf("gave up %s after the event was stored, before half the stall timeout %s", took, stall)
		}
		t.Logf("gave up %s after the consumer stopped: %v", took.Round(time.Millisecond), err)
	case ev := <-got:
		t.Fatalf("a paused consumer delivered %d", ev.Seq)
	case <-ctx.Done():
		t.Fatal("Follow did not give up the stalled consumer")
	}
	// A new Follow from the next sequence gets what the stalled one missed.
	next := make(chan Event, 16)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = l.Follow(fctx, 2, FollowOptions{}, func(ev Event) { next <- ev }) }()
	select {
	case ev := <-next:
		if ev.Seq != 2 {
			t.Fatalf("restarted consumer delivered %d first, want 2", ev.Seq)
		}
	case <-ctx.Done():
		t.Fatal("restarted consumer delivered nothing")
	}
}

// TestFollowBackPressureIsNoStall: a handler that blocks (the dispatcher
// applying back-pressure) for several stall timeouts while the stream grows
// does not make Follow give its consumer up.
func TestFollowBackPressureIsNoStall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, _ := openLog(t, Config{})
	stall := 400 * time.Millisecond
	release := make(chan struct{})
	got := make(chan uint64, 16)
	done := make(chan error, 1)
	go func() {
		onError := func(err error) {
			if errors.Is(err, ErrStalled) {
				t.Errorf("back-pressure taken for a stall: %v", err)
			}
		}
		done <- l.Follow(ctx, 1, FollowOptions{StallTimeout: stall, OnError: onError}, func(ev Event) {
			if ev.Seq == 1 {
				<-release
			}
			got <- ev.Seq
		})
	}()
	for n := range 3 {
		if _, err := l.Append(ctx, "a", []byte(fmt.Sprintf(`{"n":%d}`, n)), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Follow returned while its handler was blocked: %v", err)
	case <-time.After(4 * stall):
	}
	close(release)
	for want := uint64(1); want <= 3; want++ {
		select {
		case seq := <-got:
			if seq != want {
				t.Fatalf("got %d, want %d", seq, want)
			}
		case err := <-done:
			t.Fatalf("Follow returned %v before delivering %d", err, want)
		case <-ctx.Done():
			t.Fatalf("event %d never delivered", want)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Follow returned %v after the handler caught up", err)
	case <-time.After(2 * stall):
	}
}
