package eventlog

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Payload errors, wrapped by ValidatePayload so callers can count by reason.
var (
	ErrPayloadTooLarge  = errors.New("payload too large")
	ErrPayloadNotJSON   = errors.New("payload is not valid JSON")
	ErrPayloadNotObject = errors.New("payload is not a JSON object")
	ErrPayloadTooDeep   = errors.New("payload is nested too deeply")
)

// MaxPayloadDepth is the deepest nesting the gateway sends: its frame
// encoder refuses deeper payloads, whose recursion could exhaust its stack.
// The payload object is at depth 1, the values inside a container at depth
// d are at d+1; every value counts, scalars and empty containers included.
const MaxPayloadDepth = 256

// ValidatePayload checks that data is an event payload the gateway can frame:
// one JSON object of at most maxBytes bytes (0: no limit) nested at most
// MaxPayloadDepth deep. The gateway sends it as {"id":"<id>", <the object's
// members in their original order>}.
func ValidatePayload(data []byte, maxBytes int) error {
	if maxBytes > 0 && len(data) > maxBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(data), maxBytes)
	}
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		if json.Valid(data) {
			return ErrPayloadNotObject
		}
		return ErrPayloadNotJSON
	}
	if !json.Valid(data) {
		return ErrPayloadNotJSON
	}
	if depthExceeds(data, MaxPayloadDepth) {
		return fmt.Errorf("%w: more than %d levels", ErrPayloadTooDeep, MaxPayloadDepth)
	}
	return nil
}

// depthExceeds reports whether the valid JSON text data holds a value
// deeper than limit, counting as the frame encoder does (MaxPayloadDepth).
// A key is at the depth of its value, so every token outside a string is
// taken to start a value at the depth of the containers around it, plus 1.
func depthExceeds(data []byte, limit int) bool {
	open := 0
	inString, escaped := false, false
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case ' ', '\t', '\n', '\r', ',', ':':
			continue
		case '}', ']':
			open--
			continue
		}
		if open+1 > limit {
			return true
		}
		switch b {
		case '{', '[':
			open++
		case '"':
			inString = true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
