package eventlog

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RedisIDHeader carries the Redis stream id of an event mirrored from
// Superset's firehose. The gateway uses it to resume a client that still
// holds an id handed out by the old Node server; operators use it to trace
// an event end to end.
const RedisIDHeader = "Pushbridge-Redis-Id"

// AppendOptions are per-event publishing options.
type AppendOptions struct {
	// MsgID is the Nats-Msg-Id: a second event with the same id within the
	// stream's duplicates window is not stored again.
	MsgID string
	// Header holds extra headers stored with the event.
	Header nats.Header
}

// AppendResult is JetStream's acknowledgement of an event.
type AppendResult struct {
	// Seq is the event's stream sequence (for a duplicate, the original's).
	Seq uint64
	// Duplicate is true when MsgID was seen within the duplicates window and
	// nothing new was stored.
	Duplicate bool
}

// Append stores one event for channel and waits for JetStream's
// acknowledgement. The caller validates the payload (see ValidatePayload).
func (l *Log) Append(ctx context.Context, channel string, data []byte, opts AppendOptions) (AppendResult, error) {
	if err := ValidateChannel(channel); err != nil {
		return AppendResult{}, err
	}
	msg := &nats.Msg{Subject: l.Subject(channel), Data: data, Header: opts.Header}
	var pubOpts []jetstream.PublishOpt
	if opts.MsgID != "" {
		pubOpts = append(pubOpts, jetstream.WithMsgID(opts.MsgID))
	}
	pubOpts = append(pubOpts, jetstream.WithExpectStream(l.cfg.Stream))
	ack, err := l.js.PublishMsg(ctx, msg, pubOpts...)
	if err != nil {
		return AppendResult{}, fmt.Errorf("eventlog: append to channel %q: %w", channel, err)
	}
	return AppendResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
