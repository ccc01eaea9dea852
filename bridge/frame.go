package bridge

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxFrameHeader is the longest server frame header: 2 bytes and an 8-byte
// extended length (servers never mask).
const maxFrameHeader = 10

// event is one event as the gateway sends it: framed once, shared by every
// socket of its channel and by the replay ring. seq and frame are
// immutable; the ring links are owned by the dispatcher goroutine.
type event struct {
	seq   uint64
	frame []byte // a complete WebSocket text frame

	// ch, older and newer place the event in the ring (see ring.go).
	ch           *channel
	older, newer *event
}

// frameEncoder builds event frames, reusing its buffers across events. It
// is owned by one goroutine.
type frameEncoder struct {
	js jsEncoder
}

// encode builds the frame for an event: a single unfragmented text frame
// whose body is {"id":"<epoch>-<seq>", <payload members>}. The frame is
// exactly what websocket.PreparedMessage would put on the wire for the same
// text, built without its per-message bookkeeping. The returned body aliases
// the encoder's buffer and is valid until the next call.
func (f *frameEncoder) encode(id eventlog.ID, payload []byte) (*event, []byte, error) {
	var idBuf [32]byte
	f.js.out = f.js.out[:0]
	body, err := f.js.eventBody(id.AppendText(idBuf[:0]), payload)
	if err != nil {
		return nil, nil, err
	}
	f.js.out = body
	frame := make([]byte, 0, maxFrameHeader+len(body))
	frame = appendFrameHeader(frame, opText, len(body))
	frame = append(frame, body...)
	return &event{seq: id.Seq, frame: frame}, body, nil
}

// encodeEvent builds one frame with a fresh encoder.
func encodeEvent(id eventlog.ID, payload []byte) (*event, []byte, error) {
	var f frameEncoder
	return f.encode(id, payload)
}

// appendFrameHeader appends an unmasked, final frame header.
func appendFrameHeader(b []byte, opcode byte, n int) []byte {
	b = append(b, 0x80|opcode)
	switch {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

// controlFrame builds a ping, pong or close frame. payload must be at most
// 125 bytes.
func controlFrame(opcode byte, payload []byte) []byte {
	b := make([]byte, 0, 2+len(payload))
	b = appendFrameHeader(b, opcode, len(payload))
	return append(b, payload...)
}

// closeFrame builds a close frame with a status code and a reason, the
// reason cut to fit a control frame (on a UTF-8 boundary).
func closeFrame(code int, reason string) []byte {
	const maxReason = 123
	if len(reason) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	payload := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(payload, uint16(code))
	payload = append(payload, reason...)
	return controlFrame(opClose, payload)
}

// pingFrame is the empty ping every socket is sent.
var pingFrame = controlFrame(opPing, nil)
