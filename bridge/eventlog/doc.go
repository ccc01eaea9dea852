// Package eventlog is pushbridge's event log: one JetStream stream in which
// every channel is one subject (<prefix>.<channel>) and every event's id is
// its stream sequence.
//
// The gateway (package bridge) reads it: [Log.Follow] runs the node's single
// ordered consumer over all channels, [Log.Read] replays one channel after a
// sequence. Publishers write it: [Log.Append] (the HTTP API, the Redis
// ingest) or any NATS client publishing to the channel subject.
//
// The stream carries an epoch in its metadata, fixed when the stream is
// created. Client-visible ids are "<epoch>-<seq>" ([ID]): a stream that was
// deleted and created again restarts its sequences at 1, and the epoch tells
// an id of the old stream from one of the new.
//
// A Log is safe for concurrent use.
package eventlog
