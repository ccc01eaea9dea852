package eventlog

import (
	"errors"
	"strconv"
)

// ID is a client-visible event id: the stream epoch and the stream sequence.
// Its text form "<epoch>-<seq>" matches Superset's last_id pattern
// ^\d{1,15}-\d{1,10}$.
type ID struct {
	Epoch uint64
	Seq   uint64
}

// MaxEpoch is the largest epoch: epochs are Unix seconds, at most 10 digits,
// so that an epoch can never be mistaken for the 13-digit millisecond time
// of a Redis stream id.
const MaxEpoch = 9_999_999_999

// MaxSeq is the largest sequence Superset's last_id pattern admits.
const MaxSeq = 9_999_999_999

// ErrBadID is returned by ParseID.
var ErrBadID = errors.New("event id is not <digits>-<digits>")

// String formats the id as "<epoch>-<seq>".
func (id ID) String() string {
	return string(id.AppendText(make([]byte, 0, 24)))
}

// AppendText appends the id's text form to b.
func (id ID) AppendText(b []byte) []byte {
	b = strconv.AppendUint(b, id.Epoch, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// SplitID splits "<a>-<b>" into two decimal numbers of at most 15 and 10
// digits (Superset's last_id pattern). It accepts nothing else: no sign, no
// spaces, no empty part.
func SplitID(s string) (a, b uint64, err error) {
	dash := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			dash = i
			break
		}
	}
	if dash < 1 || dash > 15 || len(s)-dash-1 < 1 || len(s)-dash-1 > 10 {
		return 0, 0, ErrBadID
	}
	a, ok := parseDigits(s[:dash])
	if !ok {
		return 0, 0, ErrBadID
	}
	b, ok = parseDigits(s[dash+1:])
	if !ok {
		return 0, 0, ErrBadID
	}
	return a, b, nil
}

// parseDigits parses at most 15 ASCII digits; it cannot overflow.
func parseDigits(s string) (uint64, bool) {
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
