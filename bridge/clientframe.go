package bridge

import (
	"encoding/binary"
	"unicode/utf8"
)

// frameParser reads what a client sends: it answers control frames and
// discards data messages (the Superset protocol has none) without buffering
// them. It is fed whatever the socket returned, in any split, and keeps
// only an incomplete header or control frame (at most 139 bytes) between
// calls, so an idle socket costs it nothing. It is owned by the socket's
// reader.
type frameParser struct {
	limit int // largest data message, in bytes
	carry []byte
	// skip is what remains of the current data frame's payload.
	skip uint64
	// msgBytes is the size so far of the current, possibly fragmented,
	// data message; inMessage is true between its first and final frame.
	msgBytes  uint64
	inMessage bool
}

// parsedFrame is one complete control frame or the end of a data message
// (payload nil).
type parsedFrame struct {
	opcode  byte
	payload []byte // unmasked; valid only during the callback
}

// protocolError closes the socket with code and reason.
type protocolError struct {
	code   int
	reason string
}

func (e *protocolError) Error() string { return e.reason }

func protoErr(code int, reason string) *protocolError {
	return &protocolError{code: code, reason: reason}
}

// feed parses data and calls handle for every complete control frame and
// every finished data message. It stops at the first protocol violation.
func (p *frameParser) feed(data []byte, handle func(parsedFrame)) *protocolError {
	buf := data
	if len(p.carry) > 0 {
		buf = append(p.carry, data...)
		p.carry = p.carry[:0]
	}
	i := 0
	for i < len(buf) {
		if p.skip > 0 {
			n := uint64(len(buf) - i)
			if n > p.skip {
				n = p.skip
			}
			i += int(n)
			p.skip -= n
			continue
		}
		hdrLen, payloadLen, perr := p.header(buf[i:])
		if perr != nil {
			return perr
		}
		if hdrLen == 0 { // incomplete header
			break
		}
		b0 := buf[i]
		fin, opcode := b0&0x80 != 0, b0&0x0F
		if opcode >= opClose {
			total := hdrLen + int(payloadLen)
			if len(buf)-i < total {
				break
			}
			payload := buf[i+hdrLen : i+total]
			unmask(payload, buf[i+hdrLen-4:i+hdrLen])
			if opcode == opClose {
				if perr := validateClosePayload(payload); perr != nil {
					return perr
				}
			}
			handle(parsedFrame{opcode: opcode, payload: payload})
			i += total
			continue
		}
		// Data frame: account for its size and discard its payload.
		p.msgBytes += payloadLen
		if p.msgBytes > uint64(p.limit) {
			return protoErr(1009, "message too big")
		}
		p.inMessage = !fin
		if fin {
			p.msgBytes = 0
			handle(parsedFrame{opcode: opText})
		}
		i += hdrLen
		p.skip = payloadLen
	}
	if i < len(buf) {
		p.carry = append(p.carry[:0], buf[i:]...)
	}
	return nil
}

// header validates the frame header at the start of b. It returns a zero
// length when b does not hold the whole header yet.
func (p *frameParser) header(b []byte) (hdrLen int, payloadLen uint64, perr *protocolError) {
	if len(b) < 2 {
		return 0, 0, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return 0, 0, protoErr(1002, "reserved bits set (no extension was negotiated)")
	}
	opcode := b0 & 0x0F
	fin := b0&0x80 != 0
	switch opcode {
	case opContinuation:
		if !p.inMessage {
			return 0, 0, protoErr(1002, "continuation frame without a message")
		}
	case opText, opBinary:
		if p.inMessage {
			return 0, 0, protoErr(1002, "new message inside a fragmented message")
		}
	case opClose, opPing, opPong:
		if !fin {
			return 0, 0, protoErr(1002, "fragmented control frame")
		}
	default:
		return 0, 0, protoErr(1002, "unknown opcode")
	}
	if b1&0x80 == 0 {
		return 0, 0, protoErr(1002, "client frame not masked")
	}
	n := uint64(b1 & 0x7F)
	hdrLen = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, 0, nil
		}
		n = uint64(binary.BigEndian.Uint16(b[2:]))
		hdrLen = 4
	case 127:
		if len(b) < 10 {
			return 0, 0, nil
		}
		n = binary.BigEndian.Uint64(b[2:])
		if n>>63 != 0 {
			return 0, 0, protoErr(1002, "frame length out of range")
		}
		hdrLen = 10
	}
	if opcode >= opClose && n > 125 {
		return 0, 0, protoErr(1002, "control frame longer than 125 bytes")
	}
	if opcode < opClose && n > uint64(p.limit) {
		return 0, 0, protoErr(1009, "message too big")
	}
	hdrLen += 4 // masking key
	if len(b) < hdrLen {
		return 0, 0, nil
	}
	return hdrLen, n, nil
}

func unmask(b, key []byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// validateClosePayload checks a close frame's status code and reason
// (RFC 6455 §5.5.1, §7.4).
func validateClosePayload(p []byte) *protocolError {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return protoErr(1002, "close frame with a one-byte payload")
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return protoErr(1002, "invalid close code")
	}
	if !utf8.Valid(p[2:]) {
		return protoErr(1007, "close reason is not UTF-8")
	}
	return nil
}

func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// closeCodeOf returns a close payload's code, or 1005 (no status) if it
// has none.
func closeCodeOf(p []byte) int {
	if len(p) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(p))
}
