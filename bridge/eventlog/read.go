package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// readBatch is how many events one direct-get request asks for. Batches are
// requested one after another, so a long replay never holds more than this
// in flight.
const readBatch = 256

// readBatchBytes caps one batch's payload bytes (the server default is its
// 64 MB max pending, with no flow control).
const readBatchBytes = 1 << 20

// numPendingHeader is set by the server on every event of a batched direct
// get: how many matching events remain after this one.
const numPendingHeader = "Nats-Num-Pending"

// ErrNotFound is returned by Msg when the sequence is not stored (never
// written, trimmed by a limit, or beyond the end).
var ErrNotFound = errors.New("eventlog: event not found")

// Read calls fn, in order, for every stored event of channel whose sequence
// is greater than after and, when upTo is not zero, at most upTo. It uses
// batched direct gets: no consumer is created, nothing goes through the
// JetStream API queue. An error from fn stops the read and is returned.
func (l *Log) Read(ctx context.Context, channel string, after, upTo uint64, fn func(Event) error) error {
	return l.read(ctx, channel, jetstreamext.GetBatchSeq(after+1), upTo, fn)
}

// ReadFrom is Read starting at the first event stored at or after t.
func (l *Log) ReadFrom(ctx context.Context, channel string, t time.Time, upTo uint64, fn func(Event) error) error {
	return l.read(ctx, channel, jetstreamext.GetBatchStartTime(t), upTo, fn)
}

func (l *Log) read(ctx context.Context, channel string, start jetstreamext.GetBatchOpt, upTo uint64, fn func(Event) error) error {
	subject := l.Subject(channel)
	for {
		last, more, err := l.readBatch(ctx, channel, subject, start, upTo, fn)
		if err != nil || !more || (upTo != 0 && last >= upTo) {
			return err
		}
		start = jetstreamext.GetBatchSeq(last + 1)
	}
}

// readBatch reads one batch. It returns the last sequence seen and whether
// the server reported more matching events after it (Nats-Num-Pending of
// the batch's last event: a batch cut short by its byte cap says so).
func (l *Log) readBatch(ctx context.Context, channel, subject string, start jetstreamext.GetBatchOpt, upTo uint64, fn func(Event) error) (last uint64, more bool, err error) {
	msgs, err := jetstreamext.GetBatch(ctx, l.js, l.readName, readBatch,
		start, jetstreamext.GetBatchSubject(subject), jetstreamext.GetBatchMaxBytes(readBatchBytes))
	if err != nil {
		return 0, false, fmt.Errorf("eventlog: read channel %q: %w", channel, err)
	}
	for msg, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			return last, false, nil
		}
		if err != nil {
			return last, false, fmt.Errorf("eventlog: read channel %q after %d: %w", channel, last, err)
		}
		last = msg.Sequence
		more = msg.Header.Get(numPendingHeader) != "0"
		if upTo != 0 && msg.Sequence > upTo {
			return last, false, nil
		}
		ch := channel
		if ch == "" {
			ch, _ = l.ChannelOf(msg.Subject)
		}
		ev := Event{Channel: ch, Seq: msg.Sequence, Data: msg.Data, Time: msg.Time, Header: msg.Header}
		if err := fn(ev); err != nil {
			return last, false, err
		}
	}
	return last, more, nil
}

// Msg returns the event stored at seq, whatever its channel. It returns
// ErrNotFound when nothing is stored there.
func (l *Log) Msg(ctx context.Context, seq uint64) (Event, error) {
	msg, err := l.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("eventlog: get event %d: %w", seq, err)
	}
	channel, _ := l.ChannelOf(msg.Subject)
	return Event{Channel: channel, Seq: msg.Sequence, Data: msg.Data, Time: msg.Time, Header: msg.Header}, nil
}

// Scan calls fn, in order, for every stored event of every channel with a
// sequence in (after, upTo]. One sequential read serves many replays at
// once (a reconnect storm) far more cheaply than one read per channel.
func (l *Log) Scan(ctx context.Context, after, upTo uint64, fn func(Event) error) error {
	start := jetstreamext.GetBatchSeq(after + 1)
	for {
		last, more, err := l.readBatch(ctx, "", l.Wildcard(), start, upTo, fn)
		if err != nil || !more || (upTo != 0 && last >= upTo) {
			return err
		}
		start = jetstreamext.GetBatchSeq(last + 1)
	}
}

// Last returns the channel's newest stored event, or ErrNotFound.
func (l *Log) Last(ctx context.Context, channel string) (Event, error) {
	msg, err := l.stream.GetLastMsgForSubject(ctx, l.Subject(channel))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("eventlog: last event of %q: %w", channel, err)
	}
	return Event{Channel: channel, Seq: msg.Sequence, Data: msg.Data, Time: msg.Time, Header: msg.Header}, nil
}
