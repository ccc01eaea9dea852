package eventlog

import (
	"time"

	"github.com/nats-io/nats.go"
)

// Event is one stored event.
type Event struct {
	// Channel is the channel the event was published to.
	Channel string
	// Seq is the stream sequence: the event's id within the epoch.
	Seq uint64
	// Data is the payload as published, byte for byte.
	Data []byte
	// Time is when JetStream stored the event.
	Time time.Time
	// Header holds the stored headers (for example RedisIDHeader); nil when
	// the event has none or the reader did not ask for them.
	Header nats.Header
	// Pending is, for events delivered by Follow, how many more events
	// the stream held after this one when it was delivered.
	Pending uint64
}
