package main

import (
	"math"
	"strconv"
)

// An event as the load tool publishes it is a Superset async-query event,
// serialised as Superset's Flask side does (Python json.dumps: ", " and ": "
// separators, keys channel_id, job_id, user_id, status, errors, result_url
// in that order), followed by the load tool's own keys: ts_ns, the send
// time in Unix nanoseconds, and n, the event's sequence number within its
// channel (1, 2, 3, …). An optional "pad" key makes events larger.
//
// The server frames it as {"id":"<id>", …payload}; parseFrame reads back
// what the tool needs without a full JSON decode.

// appendPayload appends the JSON payload of event n of a channel, sent at
// tsNs, to b.
func appendPayload(b []byte, channel string, n, tsNs int64, pad string) []byte {
	b = append(b, `{"channel_id": "`...)
	b = append(b, channel...)
	b = append(b, `", "job_id": "`...)
	b = appendJobID(b, channel, n)
	b = append(b, `", "user_id": 1, "status": "done", "errors": [], "result_url": "/api/v1/chart/data/qc-`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `", "ts_ns": `...)
	b = strconv.AppendInt(b, tsNs, 10)
	b = append(b, `, "n": `...)
	b = strconv.AppendInt(b, n, 10)
	if pad != "" {
		b = append(b, `, "pad": "`...)
		b = append(b, pad...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendJobID appends a UUID-shaped job id derived from the channel's first
// eight characters and n, so that every event looks like a distinct job.
func appendJobID(b []byte, channel string, n int64) []byte {
	head := channel
	if len(head) > 8 {
		head = head[:8]
	}
	for len(head) < 8 {
		head += "0"
	}
	b = append(b, head...)
	b = append(b, "-0000-4000-8000-"...)
	var digits [12]byte
	u := uint64(n)
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = "0123456789abcdef"[u&0xf]
		u >>= 4
	}
	return append(b, digits[:]...)
}

// frame is what the load tool reads from one received event frame.
type frame struct {
	// id is the frame's "id" value (a sub-slice of the frame).
	id []byte
	// channel is the payload's "channel_id" (a sub-slice of the frame).
	channel []byte
	// n and tsNs are the load tool's keys; hasN and hasTS say whether the
	// frame carried them (events from other publishers do not).
	n, tsNs     int64
	hasN, hasTS bool
}

// parseFrame reads the top-level keys id, channel_id, n and ts_ns of a JSON
// object. It validates the object's structure only as far as it must to
// find them; it reports false for anything that is not a JSON object.
// It does not allocate.
func parseFrame(b []byte) (f frame, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return f, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return f, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return f, false
		}
		ks, ke, next, ok := scanString(b, i)
		if !ok {
			return f, false
		}
		key := b[ks:ke]
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return f, false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return f, false
		}
		switch string(key) { // no allocation: the compiler converts in place
		case "id", "channel_id":
			if b[i] != '"' {
				next, ok = skipValue(b, i)
				break
			}
			vs, ve, nx, sok := scanString(b, i)
			if !sok {
				return f, false
			}
			if string(key) == "id" {
				f.id = b[vs:ve]
			} else {
				f.channel = b[vs:ve]
			}
			next, ok = nx, true
		case "n", "ts_ns":
			v, nx, nok := scanInt(b, i)
			if !nok {
				next, ok = skipValue(b, i)
				break
			}
			if string(key) == "n" {
				f.n, f.hasN = v, true
			} else {
				f.tsNs, f.hasTS = v, true
			}
			next, ok = nx, true
		default:
			next, ok = skipValue(b, i)
		}
		if !ok {
			return f, false
		}
		i = skipWS(b, next)
		if i >= len(b) {
			return f, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return f, true
		default:
			return f, false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the string starting at b[i] == '"' and returns the bounds
// of its raw (still escaped) contents and the index after the closing quote.
func scanString(b []byte, i int) (start, end, next int, ok bool) {
	start = i + 1
	for j := start; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return start, j, j + 1, true
		}
	}
	return 0, 0, 0, false
}

// scanInt scans a JSON integer (no fraction or exponent) that fits int64.
func scanInt(b []byte, i int) (v int64, next int, ok bool) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var u uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 19 {
			return 0, 0, false
		}
		u = u*10 + uint64(b[i]-'0')
		i++
	}
	if i == start || u > math.MaxInt64 {
		return 0, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false
	}
	v = int64(u)
	if neg {
		v = -v
	}
	return v, i, true
}

// skipValue skips any JSON value starting at b[i], tracking nesting and
// strings; it checks structure loosely (enough not to be fooled by brackets
// inside strings).
func skipValue(b []byte, i int) (next int, ok bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		_, _, next, ok = scanString(b, i)
		return next, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, _, nx, sok := scanString(b, j)
				if !sok {
					return 0, false
				}
				j = nx - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, false
		}
		return j, true
	}
}

// parseID splits an id "<a>-<b>" of two decimal numbers (pushbridge's
// "<epoch>-<seq>", Redis's "<ms>-<seq>").
func parseID(id []byte) (a, b uint64, ok bool) {
	dash := -1
	for i, c := range id {
		if c == '-' {
			dash = i
			break
		}
	}
	if dash < 1 || dash == len(id)-1 || dash > 19 || len(id)-dash-1 > 19 {
		return 0, 0, false
	}
	for _, c := range id[:dash] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		a = a*10 + uint64(c-'0')
	}
	for _, c := range id[dash+1:] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		b = b*10 + uint64(c-'0')
	}
	return a, b, true
}
