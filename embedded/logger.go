package embedded

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// slogAdapter routes nats-server's printf-style logging into slog so that the
// embedded server's lines share the gateway's handler, level and format.
type slogAdapter struct {
	log *slog.Logger
}

var _ server.Logger = slogAdapter{}

func (a slogAdapter) logf(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !a.log.Enabled(ctx, level) {
		return
	}
	a.log.Log(ctx, level, fmt.Sprintf(format, v...))
}

func (a slogAdapter) Noticef(format string, v ...any) { a.logf(slog.LevelInfo, format, v) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.logf(slog.LevelWarn, format, v) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.logf(slog.LevelError, format, v) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.logf(slog.LevelDebug, format, v) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.logf(slog.LevelDebug-4, format, v) }

// Fatalf is called by nats-server for unrecoverable conditions. The server
// shuts itself down afterwards; the process must not exit from inside a
// library, so it is logged at error level and surfaced through readiness.
func (a slogAdapter) Fatalf(format string, v ...any) { a.logf(slog.LevelError, "fatal: "+format, v) }
