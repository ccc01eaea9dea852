//go:build unix

package main

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// raiseFileLimit lifts the open-files limit as far as the process may: each
// WebSocket is a file descriptor, and the usual 1024 (or a 20000 hard limit)
// caps a gateway far below what it can hold. Go raises the soft limit to the
// hard one by itself; a privileged process can also raise the hard limit, up
// to the kernel's nr_open.
func raiseFileLimit(log *slog.Logger) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = n
		}
	}
	if rl.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	log.Debug("open files limit", "limit", rl.Cur)
	return rl.Cur
}
