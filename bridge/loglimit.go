package bridge

import (
	"sync"
	"time"
)

// logLimiter lets one log line per period through and counts the others,
// so that a burst (a thousand slow clients closed in one dispatch batch, a
// publisher sending garbage) costs one line on the hot path, not a thousand
// writes to the log. The metrics count every occurrence.
type logLimiter struct {
	period time.Duration

	mu    sync.Mutex
	last  time.Time
	quiet int
}

// allow reports whether a line may be logged now and, when it may, how
// many were suppressed since the last one.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.period {
		l.quiet++
		return false, 0
	}
	suppressed, l.quiet, l.last = l.quiet, 0, now
	return true, suppressed
}
