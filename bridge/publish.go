package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

// publishPathPrefix starts the publish API's path:
// POST /api/v1/channels/{channel}/events.
const publishPathPrefix = "/api/v1/channels/"

// maxMsgIDLength bounds an idempotency key.
const maxMsgIDLength = 256

// publishHeaderRoom is what the default payload cap leaves of the stream's
// maximum message size for the headers Append stores with the event:
// JetStream counts headers and payload together. Nats-Msg-Id (at most
// maxMsgIDLength bytes) and Nats-Expected-Stream (a stream name, at most 255
// bytes) take under 600 bytes with the header line.
const publishHeaderRoom = 1024

// defaultMaxPayload is the default payload cap for a stream whose maximum
// message size is maxMsgSize (<= 0: unlimited, the server's maxPayload
// applies).
func defaultMaxPayload(maxMsgSize, maxPayload int64) int {
	limit := maxMsgSize
	if limit <= 0 || (maxPayload > 0 && maxPayload < limit) {
		limit = maxPayload
	}
	return int(max(limit-publishHeaderRoom, limit/2))
}

// tooLargeForStream reports whether err is JetStream (or the NATS client)
// refusing a message larger than the stream's or server's maximum.
func tooLargeForStream(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum)
}

// PublishResponse is the publish API's answer to a stored event.
type PublishResponse struct {
	// ID is the event id browsers receive ("<epoch>-<seq>").
	ID string `json:"id"`
	// Seq is the event's stream sequence.
	Seq uint64 `json:"seq"`
	// Channel is the channel published to.
	Channel string `json:"channel"`
	// Duplicate is true when the idempotency key was seen before and
	// nothing new was stored (ID is the original event's).
	Duplicate bool `json:"duplicate"`
}

// publishError is the publish API's error body.
type publishError struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// servePublish stores one event for a channel. The caller needs a bearer
// token signed with the gateway's secret whose publish claim lists patterns
// (path.Match syntax, e.g. "*" or "team-*") matching the channel; a
// browser's channel token has no such claim and is refused. The body is the
// event payload, a JSON object, stored byte for byte. An idempotency key in
// Nats-Msg-Id or Idempotency-Key makes retries safe.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, publishPathPrefix)
	channel, tail, found := strings.Cut(rest, "/")
	if !found || tail != "events" {
		s.publishFail(w, http.StatusNotFound, "not_found", "no such endpoint; publish with POST "+publishPathPrefix+"{channel}/events")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.publishFail(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	if err := eventlog.ValidateChannel(channel); err != nil {
		s.publishFail(w, http.StatusBadRequest, "invalid_channel", err.Error())
		return
	}
	patterns, ref := s.auth.publishPatterns(r, s.cfg.PublishClaim)
	if ref != nil {
		s.log.Warn("publish refused", "reason", ref.reason, "detail", ref.detail, "remote", r.RemoteAddr, "channel", channel)
		s.publishFail(w, ref.status(), ref.reason, ref.detail)
		return
	}
	if !matchesAny(patterns, channel) {
		s.publishFail(w, http.StatusForbidden, "channel_not_allowed", "the token's publish claim does not cover channel "+channel)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.publishFail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json")
			return
		}
	}
	msgID := r.Header.Get(nats.MsgIdHdr)
	if msgID == "" {
		msgID = r.Header.Get("Idempotency-Key")
	}
	if len(msgID) > maxMsgIDLength {
		s.publishFail(w, http.StatusBadRequest, "invalid_msg_id", "the idempotency key is longer than 256 bytes")
		return
	}
	limit := s.cfg.MaxPayloadBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.publishFail(w, http.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("the payload is larger than the limit of %d bytes", limit))
		return
	}
	if err != nil {
		s.publishFail(w, http.StatusBadRequest, "bad_body", "reading the body: "+err.Error())
		return
	}
	if err := eventlog.ValidatePayload(body, limit); err != nil {
		s.publishFail(w, http.StatusBadRequest, "invalid_payload", err.Error())
		return
	}
	res, err := s.events.Append(r.Context(), channel, body, eventlog.AppendOptions{MsgID: msgID})
	if tooLargeForStream(err) {
		s.log.Warn("publish refused by the event log: message too large", "channel", channel, "payload_bytes", len(body),
			"msg_id_bytes", len(msgID), "max_msg_size", s.events.Config().MaxMsgSize, "err", err)
		s.publishFail(w, http.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("the event (%d bytes of payload plus the headers stored with it) is larger than the stream's maximum message size; send a smaller payload", len(body)))
		return
	}
	if err != nil {
		s.log.Error("publish failed", "channel", channel, "err", err)
		s.publishFail(w, http.StatusServiceUnavailable, "unavailable", "the event log did not store the event; retry with the same idempotency key")
		return
	}
	result, code := "stored", http.StatusCreated
	if res.Duplicate {
		result, code = "duplicate", http.StatusOK
	}
	s.metrics.publishes.WithLabelValues(result).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(PublishResponse{ID: s.id(res.Seq).String(), Seq: res.Seq, Channel: channel, Duplicate: res.Duplicate})
}

func (s *Server) publishFail(w http.ResponseWriter, code int, reason, detail string) {
	s.metrics.publishes.WithLabelValues(reason).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(publishError{Error: detail, Reason: reason})
}

// matchesAny reports whether channel matches one of the path.Match patterns.
func matchesAny(patterns []string, channel string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, channel); err == nil && ok {
			return true
		}
	}
	return false
}
