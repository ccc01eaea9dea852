package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// Reasons an entry is skipped: the label of the skipped-entries metric.
const (
	skipNoData         = "no_data_field"
	skipNotJSON        = "data_not_json"
	skipNotObject      = "data_not_object"
	skipTooLarge       = "too_large"
	skipTooDeep        = "too_deep"
	skipNoChannel      = "no_channel_id"
	skipChannelType    = "channel_id_not_string"
	skipInvalidChannel = "invalid_channel"
)

// entry is one firehose entry ready to publish.
type entry struct {
	id      streamID
	rawID   string
	channel string
	data    []byte
}

// parseEntry checks a firehose entry the way Superset writes it: one field
// "data" holding a JSON object whose "channel_id" is a string naming a valid
// channel. It returns the reason when the entry cannot be mirrored.
func parseEntry(values map[string]any, maxBytes int) (channel string, data []byte, reason string) {
	raw, ok := values["data"]
	if !ok {
		return "", nil, skipNoData
	}
	switch v := raw.(type) {
	case string:
		data = []byte(v)
	case []byte:
		data = v
	default:
		return "", nil, skipNoData
	}
	if maxBytes > 0 && len(data) > maxBytes {
		return "", nil, skipTooLarge
	}
	// The gateway's own rule, so that nothing is mirrored that no gateway
	// could frame.
	switch err := eventlog.ValidatePayload(data, 0); {
	case errors.Is(err, eventlog.ErrPayloadNotObject):
		return "", nil, skipNotObject
	case errors.Is(err, eventlog.ErrPayloadTooDeep):
		return "", nil, skipTooDeep
	case err != nil:
		return "", nil, skipNotJSON
	}
	member := topLevelMember(data, "channel_id")
	if len(member) == 0 || string(member) == "null" {
		return "", nil, skipNoChannel
	}
	if member[0] != '"' {
		return "", nil, skipChannelType
	}
	if !utf8.Valid(member) {
		// Decoding would turn the bytes into U+FFFD: no channel's name.
		return "", nil, skipInvalidChannel
	}
	if bytes.IndexByte(member, '\\') < 0 {
		channel = string(member[1 : len(member)-1])
	} else if err := json.Unmarshal(member, &channel); err != nil {
		return "", nil, skipChannelType
	}
	if err := eventlog.ValidateChannel(channel); err != nil {
		return "", nil, skipInvalidChannel
	}
	return channel, data, ""
}

// topLevelMember returns the raw value of the last top-level member of the
// JSON object data named key (the one JSON.parse and encoding/json keep),
// or nil. data must be valid JSON (json.Valid) starting with an object: the
// scan only finds where keys and values end, without decoding them, so an
// entry costs one validation pass and one scan instead of a decode.
func topLevelMember(data []byte, key string) []byte {
	i := skipSpace(data, 0) + 1 // past '{'
	var found []byte
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != '"' {
			return found // '}': the end of the object
		}
		keyEnd := skipString(data, i)
		match := keyEquals(data[i:keyEnd], key)
		i = skipSpace(data, keyEnd) + 1 // past ':'
		i = skipSpace(data, i)
		valEnd := skipValue(data, i)
		if match {
			found = data[i:valEnd]
		}
		i = skipSpace(data, valEnd)
		if i >= len(data) || data[i] != ',' {
			return found
		}
		i++
	}
}

// keyEquals reports whether the JSON string literal lit (quotes included)
// denotes key.
func keyEquals(lit []byte, key string) bool {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1:len(lit)-1]) == key
	}
	var s string
	return json.Unmarshal(lit, &s) == nil && s == key
}

// skipString returns the index just past the string literal at data[i].
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// skipValue returns the index just past the JSON value at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(data) && !isValueEnd(data[i]) { // a number or a literal
		i++
	}
	return i
}

func isValueEnd(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
