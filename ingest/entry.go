package ingest

import (
	"encoding/json"
	"errors"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// Reasons an entry is skipped: the label of the skipped-entries metric.
const (
	skipNoData         = "no_data_field"
	skipNotJSON        = "data_not_json"
	skipNotObject      = "data_not_object"
	skipTooLarge       = "too_large"
	skipNoChannel      = "no_channel_id"
	skipChannelType    = "channel_id_not_string"
	skipInvalidChannel = "invalid_channel"
	skipRejected       = "rejected_by_stream"
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
	if !startsObject(data) {
		if err := eventlog.ValidatePayload(data, 0); errors.Is(err, eventlog.ErrPayloadNotObject) {
			return "", nil, skipNotObject
		}
		return "", nil, skipNotJSON
	}
	// One pass validates the whole text and finds channel_id.
	var fields struct {
		ChannelID json.RawMessage `json:"channel_id"`
	}
	if err := json.Unmarshal(data, &fields); err != nil {
		return "", nil, skipNotJSON
	}
	if len(fields.ChannelID) == 0 || string(fields.ChannelID) == "null" {
		return "", nil, skipNoChannel
	}
	if err := json.Unmarshal(fields.ChannelID, &channel); err != nil {
		return "", nil, skipChannelType
	}
	if err := eventlog.ValidateChannel(channel); err != nil {
		return "", nil, skipInvalidChannel
	}
	return channel, data, ""
}

// startsObject reports whether the first non-space byte opens an object.
func startsObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}
