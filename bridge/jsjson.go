package bridge

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// The Node server sends JSON.stringify({id, ...JSON.parse(data)}). To be a
// drop-in, pushbridge produces the same bytes: compact, members in the
// publisher's order, strings re-escaped the way JSON.stringify escapes them
// (non-ASCII raw, \u escapes only for control characters and lone
// surrogates), numbers printed the way JavaScript prints a Number. This file
// is that re-encoder. It also guarantees valid UTF-8, which a WebSocket text
// frame requires (invalid bytes become U+FFFD, as Node's UTF-8 decoding of
// the Redis reply does).

var (
	errJSONSyntax    = errors.New("invalid JSON")
	errJSONDepth     = errors.New("JSON nested too deeply")
	errJSONNotObject = errors.New("JSON value is not an object")
)

// maxJSONDepth bounds nesting so that hostile payloads cannot exhaust the
// stack. The publish API refuses deeper payloads with the same rule
// (eventlog.ValidatePayload).
const maxJSONDepth = eventlog.MaxPayloadDepth

// jsEncoder re-encodes one JSON text.
type jsEncoder struct {
	src []byte
	pos int
	out []byte
	// members is a stack of the members of the objects being encoded.
	members []member
}

func (e *jsEncoder) skipSpace() {
	for e.pos < len(e.src) {
		switch e.src[e.pos] {
		case ' ', '\t', '\n', '\r':
			e.pos++
		default:
			return
		}
	}
}

// appendEventBody appends {"id":"<id>", <members of payload except "id">}
// to out, in the order JavaScript gives the object's properties. payload
// must be one JSON object.
func appendEventBody(out, id, payload []byte) ([]byte, error) {
	e := jsEncoder{out: out}
	return e.eventBody(id, payload)
}

// eventBody is appendEventBody on a reusable encoder: it resets the encoder
// to payload and appends to e.out, keeping the encoder's buffers.
func (e *jsEncoder) eventBody(id, payload []byte) ([]byte, error) {
	out := e.out
	e.src, e.pos, e.members = payload, 0, e.members[:0]
	e.skipSpace()
	if e.pos >= len(e.src) || e.src[e.pos] != '{' {
		if e.pos < len(e.src) {
			return out, errJSONNotObject
		}
		return out, errJSONSyntax
	}
	if err := e.object(1, id); err != nil {
		return out, err
	}
	e.skipSpace()
	if e.pos != len(e.src) {
		return out, errJSONSyntax
	}
	return e.out, nil
}

// member locates one encoded member in e.out: the key (with its quotes)
// and the value.
type member struct {
	keyStart, keyEnd, valEnd int
}

// object encodes the object whose '{' is at e.pos. With a non-nil id it is
// the event's top level: the first member is "id" with the event id, and a
// payload member named "id" is dropped (the event id must win, or a
// resuming client would send back the publisher's value).
//
// Members are streamed as they come. JavaScript orders an object's
// properties as integer-like keys ascending, then the others in insertion
// order, and keeps one property per key (first position, last value); an
// object with such keys is rewritten in that order at its end.
func (e *jsEncoder) object(depth int, id []byte) error {
	e.pos++ // '{'
	e.out = append(e.out, '{')
	regionStart := len(e.out)
	base := len(e.members)
	defer func() { e.members = e.members[:base] }()
	reorder := false
	if id != nil {
		ks := len(e.out)
		e.out = append(e.out, `"id"`...)
		ke := len(e.out)
		e.out = append(e.out, ':', '"')
		e.out = append(e.out, id...)
		e.out = append(e.out, '"')
		e.members = append(e.members, member{ks, ke, len(e.out)})
	}
	e.skipSpace()
	if e.pos < len(e.src) && e.src[e.pos] == '}' {
		e.pos++
		e.out = append(e.out, '}')
		return nil
	}
	for {
		e.skipSpace()
		if e.pos >= len(e.src) || e.src[e.pos] != '"' {
			return errJSONSyntax
		}
		mark := len(e.out)
		if len(e.members) > base {
			e.out = append(e.out, ',')
		}
		keyStart := len(e.out)
		if err := e.str(); err != nil {
			return err
		}
		keyEnd := len(e.out)
		e.skipSpace()
		if e.pos >= len(e.src) || e.src[e.pos] != ':' {
			return errJSONSyntax
		}
		e.pos++
		e.out = append(e.out, ':')
		if err := e.value(depth + 1); err != nil {
			return err
		}
		key := e.out[keyStart:keyEnd]
		switch {
		case id != nil && string(key) == `"id"`:
			e.out = e.out[:mark]
		default:
			if !reorder && (isArrayIndexKey(key) || e.seenKey(base, key)) {
				reorder = true
			}
			e.members = append(e.members, member{keyStart, keyEnd, len(e.out)})
		}
		e.skipSpace()
		if e.pos >= len(e.src) {
			return errJSONSyntax
		}
		switch e.src[e.pos] {
		case ',':
			e.pos++
		case '}':
			e.pos++
			if reorder {
				e.reorder(regionStart, e.members[base:])
			}
			e.out = append(e.out, '}')
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// seenKey reports whether key may already be among the object's members.
// Small objects are scanned; a large one is simply rewritten at its end
// (reorder dedupes through a set), so a hostile payload with many keys
// costs O(n log n), not O(n²).
func (e *jsEncoder) seenKey(base int, key []byte) bool {
	ms := e.members[base:]
	if len(ms) > 32 {
		return true
	}
	for _, m := range ms {
		if string(e.out[m.keyStart:m.keyEnd]) == string(key) {
			return true
		}
	}
	return false
}

// isArrayIndexKey reports whether an encoded key ("...") is a canonical
// array index (0 to 2^32-2), which JavaScript orders before other keys.
func isArrayIndexKey(key []byte) bool {
	d := key[1 : len(key)-1]
	if len(d) == 0 || len(d) > 10 || (len(d) > 1 && d[0] == '0') {
		return false
	}
	var n uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + uint64(c-'0')
	}
	return n < 1<<32-1
}

// reorder rewrites the members encoded since regionStart in JavaScript's
// property order, one member per key.
func (e *jsEncoder) reorder(regionStart int, ms []member) {
	type prop struct {
		key, val []byte
		index    uint64
		isIndex  bool
	}
	region := append([]byte(nil), e.out[regionStart:]...)
	props := make([]prop, 0, len(ms))
	pos := make(map[string]int, len(ms))
	for _, m := range ms {
		key := region[m.keyStart-regionStart : m.keyEnd-regionStart]
		val := region[m.keyEnd-regionStart+1 : m.valEnd-regionStart]
		if i, ok := pos[string(key)]; ok {
			props[i].val = val // first position, last value
			continue
		}
		p := prop{key: key, val: val, isIndex: isArrayIndexKey(key)}
		if p.isIndex {
			p.index, _ = strconv.ParseUint(string(key[1:len(key)-1]), 10, 64)
		}
		pos[string(key)] = len(props)
		props = append(props, p)
	}
	sort.SliceStable(props, func(i, j int) bool {
		a, b := props[i], props[j]
		if a.isIndex != b.isIndex {
			return a.isIndex
		}
		return a.isIndex && a.index < b.index
	})
	e.out = e.out[:regionStart]
	for i, p := range props {
		if i > 0 {
			e.out = append(e.out, ',')
		}
		e.out = append(e.out, p.key...)
		e.out = append(e.out, ':')
		e.out = append(e.out, p.val...)
	}
}

func (e *jsEncoder) value(depth int) error {
	if depth > maxJSONDepth {
		return errJSONDepth
	}
	e.skipSpace()
	if e.pos >= len(e.src) {
		return errJSONSyntax
	}
	switch c := e.src[e.pos]; {
	case c == '{':
		return e.object(depth, nil)
	case c == '[':
		return e.array(depth)
	case c == '"':
		return e.str()
	case c == 't':
		return e.literal("true")
	case c == 'f':
		return e.literal("false")
	case c == 'n':
		return e.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return e.number()
	}
	return errJSONSyntax
}

func (e *jsEncoder) array(depth int) error {
	e.pos++
	e.out = append(e.out, '[')
	e.skipSpace()
	if e.pos < len(e.src) && e.src[e.pos] == ']' {
		e.pos++
		e.out = append(e.out, ']')
		return nil
	}
	for {
		if err := e.value(depth + 1); err != nil {
			return err
		}
		e.skipSpace()
		if e.pos >= len(e.src) {
			return errJSONSyntax
		}
		switch e.src[e.pos] {
		case ',':
			e.pos++
			e.out = append(e.out, ',')
		case ']':
			e.pos++
			e.out = append(e.out, ']')
			return nil
		default:
			return errJSONSyntax
		}
	}
}

func (e *jsEncoder) literal(word string) error {
	if len(e.src)-e.pos < len(word) || string(e.src[e.pos:e.pos+len(word)]) != word {
		return errJSONSyntax
	}
	e.pos += len(word)
	e.out = append(e.out, word...)
	return nil
}

// number validates a JSON number and appends JavaScript's rendering of it.
func (e *jsEncoder) number() error {
	start := e.pos
	if e.src[e.pos] == '-' {
		e.pos++
	}
	intStart := e.pos
	switch {
	case e.pos < len(e.src) && e.src[e.pos] == '0':
		e.pos++
	case e.pos < len(e.src) && e.src[e.pos] >= '1' && e.src[e.pos] <= '9':
		for e.pos < len(e.src) && e.src[e.pos] >= '0' && e.src[e.pos] <= '9' {
			e.pos++
		}
	default:
		return errJSONSyntax
	}
	intDigits := e.pos - intStart
	simple := true
	if e.pos < len(e.src) && e.src[e.pos] == '.' {
		simple = false
		e.pos++
		n := e.pos
		for e.pos < len(e.src) && e.src[e.pos] >= '0' && e.src[e.pos] <= '9' {
			e.pos++
		}
		if e.pos == n {
			return errJSONSyntax
		}
	}
	if e.pos < len(e.src) && (e.src[e.pos] == 'e' || e.src[e.pos] == 'E') {
		simple = false
		e.pos++
		if e.pos < len(e.src) && (e.src[e.pos] == '+' || e.src[e.pos] == '-') {
			e.pos++
		}
		n := e.pos
		for e.pos < len(e.src) && e.src[e.pos] >= '0' && e.src[e.pos] <= '9' {
			e.pos++
		}
		if e.pos == n {
			return errJSONSyntax
		}
	}
	lit := e.src[start:e.pos]
	// Integers of up to 15 digits are exact doubles that JavaScript prints
	// as written (except -0, which it prints as 0).
	if simple && intDigits <= 15 {
		if string(lit) == "-0" {
			e.out = append(e.out, '0')
		} else {
			e.out = append(e.out, lit...)
		}
		return nil
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return errJSONSyntax
	}
	e.out = appendJSNumber(e.out, f)
	return nil
}

// appendJSNumber appends Number.prototype.toString(f) (ECMA-262
// Number::toString): the shortest round-tripping digits, in plain notation
// for exponents from -7 to 20 and in d.ddde±n notation outside.
// JSON.stringify renders infinities (overflowing literals) as null.
func appendJSNumber(out []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(out, "null"...)
	}
	if f == 0 {
		return append(out, '0')
	}
	if f < 0 {
		out = append(out, '-')
		f = -f
	}
	var buf [32]byte
	// Shortest digits in scientific form: d.ddde±XX.
	s := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	ePos := 0
	for i, c := range s {
		if c == 'e' {
			ePos = i
			break
		}
	}
	var digits [24]byte
	nd := 0
	for _, c := range s[:ePos] {
		if c != '.' {
			digits[nd] = c
			nd++
		}
	}
	exp, _ := strconv.Atoi(string(s[ePos+1:]))
	n := exp + 1 // position of the decimal point relative to the digits
	k := nd
	switch {
	case k <= n && n <= 21:
		out = append(out, digits[:k]...)
		for i := 0; i < n-k; i++ {
			out = append(out, '0')
		}
	case 0 < n && n <= 21:
		out = append(out, digits[:n]...)
		out = append(out, '.')
		out = append(out, digits[n:k]...)
	case -6 < n && n <= 0:
		out = append(out, '0', '.')
		for i := 0; i < -n; i++ {
			out = append(out, '0')
		}
		out = append(out, digits[:k]...)
	default:
		out = append(out, digits[0])
		if k > 1 {
			out = append(out, '.')
			out = append(out, digits[1:k]...)
		}
		out = append(out, 'e')
		if n-1 >= 0 {
			out = append(out, '+')
		}
		out = strconv.AppendInt(out, int64(n-1), 10)
	}
	return out
}

// str decodes the JSON string at e.pos and appends JSON.stringify's
// encoding of the decoded value.
func (e *jsEncoder) str() error {
	e.pos++ // opening quote
	e.out = append(e.out, '"')
	for {
		// Fast path: copy a run of bytes that need no escaping.
		run := e.pos
		for e.pos < len(e.src) {
			c := e.src[e.pos]
			if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
				break
			}
			e.pos++
		}
		e.out = append(e.out, e.src[run:e.pos]...)
		if e.pos >= len(e.src) {
			return errJSONSyntax
		}
		c := e.src[e.pos]
		switch {
		case c == '"':
			e.pos++
			e.out = append(e.out, '"')
			return nil
		case c < 0x20:
			return errJSONSyntax // raw control characters are not JSON
		case c == '\\':
			if err := e.escape(); err != nil {
				return err
			}
		default:
			r, size := utf8.DecodeRune(e.src[e.pos:])
			if r == utf8.RuneError && size == 1 {
				e.out = utf8.AppendRune(e.out, utf8.RuneError)
			} else {
				e.out = append(e.out, e.src[e.pos:e.pos+size]...)
			}
			e.pos += size
		}
	}
}

// escape handles one backslash escape at e.pos.
func (e *jsEncoder) escape() error {
	if e.pos+1 >= len(e.src) {
		return errJSONSyntax
	}
	c := e.src[e.pos+1]
	e.pos += 2
	switch c {
	case '"', '\\', '/':
		e.appendRune(rune(c))
	case 'b':
		e.appendRune('\b')
	case 'f':
		e.appendRune('\f')
	case 'n':
		e.appendRune('\n')
	case 'r':
		e.appendRune('\r')
	case 't':
		e.appendRune('\t')
	case 'u':
		r, ok := e.hex4()
		if !ok {
			return errJSONSyntax
		}
		if utf16.IsSurrogate(r) {
			// A high surrogate followed by an escaped low one is one
			// character; anything else is a lone surrogate, which
			// JSON.stringify writes back as an escape.
			if r < 0xDC00 && e.pos+1 < len(e.src) && e.src[e.pos] == '\\' && e.src[e.pos+1] == 'u' {
				save := e.pos
				e.pos += 2
				r2, ok := e.hex4()
				if ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
					e.out = utf8.AppendRune(e.out, utf16.DecodeRune(r, r2))
					return nil
				}
				e.pos = save
			}
			e.out = appendUnicodeEscape(e.out, r)
			return nil
		}
		e.appendRune(r)
	default:
		return errJSONSyntax
	}
	return nil
}

func (e *jsEncoder) hex4() (rune, bool) {
	if len(e.src)-e.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range e.src[e.pos : e.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	e.pos += 4
	return r, true
}

// appendRune appends a decoded character the way JSON.stringify writes it.
func (e *jsEncoder) appendRune(r rune) {
	switch r {
	case '"':
		e.out = append(e.out, '\\', '"')
	case '\\':
		e.out = append(e.out, '\\', '\\')
	case '\b':
		e.out = append(e.out, '\\', 'b')
	case '\f':
		e.out = append(e.out, '\\', 'f')
	case '\n':
		e.out = append(e.out, '\\', 'n')
	case '\r':
		e.out = append(e.out, '\\', 'r')
	case '\t':
		e.out = append(e.out, '\\', 't')
	default:
		if r < 0x20 {
			e.out = appendUnicodeEscape(e.out, r)
			return
		}
		e.out = utf8.AppendRune(e.out, r)
	}
}

func appendUnicodeEscape(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(out, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
}
