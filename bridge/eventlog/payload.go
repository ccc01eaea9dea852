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
)

// ValidatePayload checks that data is an event payload the gateway can frame:
// one JSON object of at most maxBytes bytes (0: no limit). The gateway sends
// it as {"id":"<id>", <the object's members in their original order>}.
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
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
