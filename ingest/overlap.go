package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// overlapCheck recognises, after the checkpoint (at the start of a term) or
// after a rewind, the entries that are stored in the stream already, so
// that none is stored twice whatever the dedupe window and however far
// behind the checkpoint is. It asks the stream, not the dedupe window:
//
//   - Per channel, the stored entries are a prefix of the channel's entries
//     in Redis order: a mirror publishes a channel's entry n+1 only after n
//     is acknowledged, a failed publish is repeated before any later entry
//     of its channel, and a repeat inside the window is dropped. So an
//     entry is stored exactly when its Redis id is at or below the Redis id
//     of the last event stored on its channel's subject. That last id is
//     asked once per channel (a get served by the stream leader, not a
//     direct get that a follower or a mirror may answer from behind) and
//     cached for the pass: this pass's own publishes only add later ones.
//   - Which entries can be stored? Everything up to the furthest position
//     any mirror acknowledged — unbounded after the checkpoint when writing
//     it kept failing — and beyond that only entries that were in flight.
//     A mirror publishes an entry only while fewer than MaxInFlight entries
//     after its acknowledged position are unsettled, so every stored entry
//     lies within MaxInFlight entries after some acknowledged position. The
//     first entry found not stored lies after every acknowledged position;
//     checking 2 × MaxInFlight entries from it therefore covers everything
//     that can be stored. After that the pass publishes without asking.
//
// An entry of a channel whose last event was not written by this firehose's
// mirror (another publisher on the same channel) cannot be judged this way:
// it is published and left to the dedupe window, and it does not count as
// found not stored.
type overlapCheck struct {
	active bool
	// span is how many entries are checked from the first one found not
	// stored; left counts them down (-1 until that entry is found).
	span, left int
	last       map[string]channelLast
	found      int
}

// channelLast is what the stream holds for a channel when first asked.
type channelLast struct {
	// exact: id (or none) is the last entry this firehose's mirror stored;
	// false when the channel's last event came from another publisher.
	exact bool
	none  bool
	id    streamID
}

// verdict is the overlap check's answer for one entry.
type verdict int

const (
	isStored  verdict = iota
	notStored         // exactly known not to be stored
	unknown           // the channel's last event is not ours
)

// begin starts a pass.
func (o *overlapCheck) begin() {
	o.active, o.left, o.found = true, -1, 0
	o.last = make(map[string]channelLast)
}

// step counts one entry read during the pass; notStoredExactly says it was
// found not stored.
func (o *overlapCheck) step(notStoredExactly bool) {
	if !o.active {
		return
	}
	if o.left < 0 {
		if !notStoredExactly {
			return
		}
		o.left = o.span
	}
	o.left--
	if o.left <= 0 {
		o.active = false
		o.last = nil
	}
}

// check says whether entry id of channel is stored already.
func (o *overlapCheck) check(ctx context.Context, m *Mirror, channel string, id streamID) (verdict, error) {
	last, ok := o.last[channel]
	if !ok {
		var err error
		if last, err = m.lastStored(ctx, channel); err != nil {
			return unknown, fmt.Errorf("check %s against the stream: %w", id, err)
		}
		o.last[channel] = last
	}
	switch {
	case !last.exact:
		return unknown, nil
	case !last.none && !last.id.less(id):
		o.found++
		return isStored, nil
	}
	return notStored, nil
}

// msgGetResponse is the JetStream API's answer to STREAM.MSG.GET.
type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Message *struct {
		Header []byte `json:"hdrs"`
	} `json:"message"`
}

// jsErrNoMessageFound is nats-server's JSNoMessageFoundErr.
const jsErrNoMessageFound = 10037

// lastStored asks the stream leader for the channel's last stored event and
// reads which firehose entry it is from its Nats-Msg-Id
// ("<firehose>:<redis id>", set by the mirror).
func (m *Mirror) lastStored(ctx context.Context, channel string) (channelLast, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": m.events.Subject(channel)})
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The same API as the mirror's JetStream context (New): its domain's.
	api := eventlog.APIPrefix(m.cfg.Domain)
	msg, err := m.nc.RequestWithContext(rctx, api+"STREAM.MSG.GET."+m.events.Stream(), req)
	if err != nil {
		return channelLast{}, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return channelLast{}, fmt.Errorf("last event of %q: %w", channel, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == jsErrNoMessageFound {
			return channelLast{exact: true, none: true}, nil
		}
		return channelLast{}, fmt.Errorf("last event of %q: %s (%d/%d)", channel, resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return channelLast{}, fmt.Errorf("last event of %q: empty answer", channel)
	}
	var hdr nats.Header
	if len(resp.Message.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return channelLast{}, fmt.Errorf("last event of %q: headers: %w", channel, err)
		}
	}
	rid, ok := strings.CutPrefix(hdr.Get(nats.MsgIdHdr), m.firehose+":")
	if !ok {
		return channelLast{}, nil // another publisher's event
	}
	id, err := parseStreamID(rid)
	if err != nil {
		return channelLast{}, nil
	}
	return channelLast{exact: true, id: id}, nil
}
