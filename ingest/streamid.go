package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// streamID is a Redis stream entry id, "<ms>-<seq>".
type streamID struct {
	ms, seq uint64
}

var errBadStreamID = errors.New("not a Redis stream id")

func parseStreamID(s string) (streamID, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		// "<ms>" alone means "<ms>-0" in XADD/XRANGE arguments.
		b = "0"
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return streamID{}, fmt.Errorf("%w: %q", errBadStreamID, s)
	}
	return streamID{ms: ms, seq: seq}, nil
}

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

func (id streamID) less(o streamID) bool {
	return id.ms < o.ms || (id.ms == o.ms && id.seq < o.seq)
}

func (id streamID) isZero() bool { return id.ms == 0 && id.seq == 0 }
