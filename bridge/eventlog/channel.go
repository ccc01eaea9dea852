package eventlog

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxChannelLength bounds a channel name in bytes. Superset channels are
// UUIDs (36) or "guest-" and a hex HMAC (70).
const MaxChannelLength = 256

// ErrInvalidChannel is wrapped by ValidateChannel's errors.
var ErrInvalidChannel = errors.New("invalid channel name")

// ValidateChannel reports whether name can be a channel: exactly one NATS
// subject token, so that "<prefix>.<name>" addresses one channel and never a
// wildcard or a deeper subject.
func ValidateChannel(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidChannel)
	}
	if len(name) > MaxChannelLength {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidChannel, len(name), MaxChannelLength)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalidChannel)
	}
	for _, r := range name {
		switch {
		case r == '.':
			return fmt.Errorf("%w: %q contains '.', which would split the subject", ErrInvalidChannel, name)
		case r == '*' || r == '>':
			return fmt.Errorf("%w: %q contains the wildcard %q", ErrInvalidChannel, name, r)
		case r <= ' ' || r == 0x7f:
			return fmt.Errorf("%w: %q contains whitespace or a control character", ErrInvalidChannel, name)
		}
	}
	return nil
}
