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
//     100 ms and on shutdown, by compare-and-set, only while the lease is
//     ours, never backwards, and only when the position moved. A restart
//     resumes after it.
//   - Overlap. The entries after the checkpoint that are stored already
//     (acknowledged but not yet checkpointed, or in flight) are recognised
//     against the stream, not left to its dedupe window: per channel the
//     stored entries are a prefix in Redis order, so an entry is stored
//     exactly when its id is at or below the Redis id of the channel's last
//     stored event (see overlapCheck).
//   - Order. Publishes are asynchronous with a bounded window, but a
//     channel never has two entries in flight: if one fails, no later entry
//     of its channel was sent, and rewinding to the last acknowledged entry
//     republishes it before them. Every acknowledgement is checked; only a
//     message too large for the stream is skipped, any other refusal is
//     retried.
//   - One writer. Mirrors hold a lease in the KV bucket (compare-and-set on
//     its revision, renewed at a third of its TTL); only the holder reads and
//     publishes, a standby takes over when the lease expires, and a holder
//     that fails to renew, or whose lease passes its deadline on the local
//     monotonic clock, stops at once. Give the mirror a NATS connection
//     that does not buffer while reconnecting (Config.Conn).
//   - Bad entries (no data field, data that is not a JSON object, no string
//     channel_id, an invalid channel name, over the size limit) are counted
//     by reason, logged with their Redis id, optionally published to a
//     dead-letter subject, and skipped.
//   - Gaps. If the firehose was trimmed past the mirror's position before
//     it read the entries (MAXLEN), the lost range, and with Redis 7 the
//     number of entries in it, is logged as an error and counted: those
//     events cannot be recovered.
package ingest
