package bridge

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// clientFrame builds a masked client frame.
func clientFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	n := len(payload)
	switch {
	case n <= 125:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

type parsed struct {
	frames []parsedFrame
	err    *protocolError
}

func parseAll(chunks [][]byte, limit int) parsed {
	p := frameParser{limit: limit}
	var out parsed
	for _, c := range chunks {
		if err := p.feed(append([]byte(nil), c...), func(f parsedFrame) {
			out.frames = append(out.frames, parsedFrame{opcode: f.opcode, payload: append([]byte(nil), f.payload...)})
		}); err != nil {
			out.err = err
			return out
		}
	}
	return out
}

func TestFrameParser(t *testing.T) {
	stream := bytes.Join([][]byte{
		clientFrame(true, opPing, []byte("p1")),
		clientFrame(false, opText, bytes.Repeat([]byte("a"), 300)),
		clientFrame(true, opContinuation, []byte("b")),
		clientFrame(true, opPong, nil),
		clientFrame(true, opBinary, make([]byte, 70000)),
		clientFrame(true, opClose, append([]byte{0x03, 0xE8}, "bye"...)),
	}, nil)
	want := []byte{opPing, opText, opPong, opText, opClose}
	// Every split of the stream into two pieces parses the same.
	for cut := 0; cut <= len(stream); cut += 97 {
		got := parseAll([][]byte{stream[:cut], stream[cut:]}, 100000)
		if got.err != nil {
			t.Fatalf("cut %d: %v", cut, got.err)
		}
		if len(got.frames) != len(want) {
			t.Fatalf("cut %d: %d frames", cut, len(got.frames))
		}
		for i, f := range got.frames {
			if f.opcode != want[i] {
				t.Fatalf("cut %d: frame %d opcode %d, want %d", cut, i, f.opcode, want[i])
			}
		}
		if string(got.frames[0].payload) != "p1" || closeCodeOf(got.frames[4].payload) != 1000 {
			t.Fatalf("cut %d: payloads %q %q", cut, got.frames[0].payload, got.frames[4].payload)
		}
	}
	// Byte by byte, too.
	var chunks [][]byte
	for i := range stream {
		chunks = append(chunks, stream[i:i+1])
	}
	if got := parseAll(chunks, 100000); got.err != nil || len(got.frames) != len(want) {
		t.Fatalf("byte by byte: %v, %d frames", got.err, len(got.frames))
	}
}

func TestFrameParserViolations(t *testing.T) {
	unmasked := clientFrame(true, opText, []byte("x"))
	unmasked[1] &^= 0x80
	unmasked = append(unmasked[:2], unmasked[6:]...)
	for name, tc := range map[string]struct {
		data []byte
		code int
	}{
		"unmasked":          {unmasked, 1002},
		"reserved bits":     {append([]byte{0xC1}, clientFrame(true, opText, nil)[1:]...), 1002},
		"unknown opcode":    {clientFrame(true, 0x3, nil), 1002},
		"long control":      {clientFrame(true, opPing, make([]byte, 126)), 1002},
		"fragmented ping":   {clientFrame(false, opPing, nil), 1002},
		"orphan continue":   {clientFrame(true, opContinuation, nil), 1002},
		"nested message":    {append(clientFrame(false, opText, nil), clientFrame(true, opText, nil)...), 1002},
		"too big":           {clientFrame(true, opText, make([]byte, 2000)), 1009},
		"too big fragments": {append(clientFrame(false, opText, make([]byte, 800)), clientFrame(true, opContinuation, make([]byte, 800))...), 1009},
		"bad close code":    {clientFrame(true, opClose, []byte{0x03, 0xEC}), 1002}, // 1004
		"one-byte close":    {clientFrame(true, opClose, []byte{0x03}), 1002},
		"bad close utf8":    {clientFrame(true, opClose, []byte{0x03, 0xE8, 0xff}), 1007},
	} {
		got := parseAll([][]byte{tc.data}, 1024)
		if got.err == nil || got.err.code != tc.code {
			t.Errorf("%s: error %v, want code %d", name, got.err, tc.code)
		}
	}
}

// FuzzFrameParser: any input, split anywhere, never panics, keeps at most
// a small carry, and parses the same whole or in pieces.
func FuzzFrameParser(f *testing.F) {
	f.Add(clientFrame(true, opPing, []byte("x")), 3)
	f.Add(append(clientFrame(false, opText, []byte("ab")), clientFrame(true, opContinuation, []byte("c"))...), 5)
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xE8}), 1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			return
		}
		whole := parseAll([][]byte{data}, 4096)
		split := parseAll([][]byte{data[:cut], data[cut:]}, 4096)
		if (whole.err == nil) != (split.err == nil) || len(whole.frames) != len(split.frames) {
			t.Fatalf("whole %v/%d frames, split at %d %v/%d frames", whole.err, len(whole.frames), cut, split.err, len(split.frames))
		}
		p := frameParser{limit: 4096}
		_ = p.feed(append([]byte(nil), data...), func(parsedFrame) {})
		if len(p.carry) > 2+8+4+125 {
			t.Fatalf("carry of %d bytes", len(p.carry))
		}
	})
}
