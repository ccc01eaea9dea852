// Package ingest mirrors Superset's Redis Streams into the event log,
// exactly once and in Redis order per channel.
//
// Superset (up to 6.x) XADDs every async-query event to the per-channel
// stream and to the firehose "<prefix>full". A Mirror reads the firehose
// with XREAD and appends each entry's data field, byte for byte, to the
// channel's subject, with the Redis id as Nats-Msg-Id (dedupe) and in the
// Pushbridge-Redis-Id header (tracing, and resuming clients that hold an id
// from the old Node server).
//
// How exactly-once holds, across crashes, Redis restarts and NATS outages:
//
//   - Checkpoint. The id of the last entry JetStream acknowledged (with
//     every entry before it) is kept in a NATS KV bucket, written every
//     100 ms and on shutdown. A restart resumes after it; the overlap (acked
//     but not yet checkpointed entries) is absorbed by the stream's dedupe
//     window, and when the checkpoint is older than half that window each
//     overlapping entry is also checked against the channel's last stored
//     event (per-channel order is Redis order, so an entry at or below the
//     channel's last Redis id was stored already).
//   - Order. Publishes are asynchronous with a bounded window, but a
//     channel never has two entries in flight: if one fails, no later entry
//     of its channel was sent, and rewinding to the checkpoint republishes
//     it before them. Every acknowledgement is checked.
//   - One writer. Mirrors hold a lease in the KV bucket (compare-and-set on
//     its revision, renewed at a third of its TTL); only the holder reads and
//     publishes, a standby takes over when the lease expires, and a holder
//     that fails to renew stops at once.
//   - Bad entries (no data field, data that is not a JSON object, no string
//     channel_id, an invalid channel name, over the size limit) are counted
//     by reason, logged with their Redis id, optionally published to a
//     dead-letter subject, and skipped.
//   - Gaps. If the firehose was trimmed past the checkpoint while the
//     mirror was away (MAXLEN), the lost range is logged as an error and
//     counted: those events cannot be recovered.
package ingest
