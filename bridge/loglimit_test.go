package bridge

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	l := logLimiter{period: 50 * time.Millisecond}
	if ok, n := l.allow(); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for range 999 {
		if ok, _ := l.allow(); ok {
			t.Fatal("a line within the period was let through")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ok, n := l.allow(); ok {
			if n < 999 {
				t.Fatalf("suppressed %d, want at least 999", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no line let through after the period")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
