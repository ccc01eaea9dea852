//go:build !unix

package main

import "log/slog"

// raiseFileLimit is a no-op where there is no RLIMIT_NOFILE.
func raiseFileLimit(*slog.Logger) uint64 { return 0 }
