package bridge

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServeHTTP upgrades WebSocket requests on any path and serves the plain
// HTTP endpoints: GET/HEAD /health (liveness, "OK"), /ready (readiness,
// JSON), /metrics (Prometheus) and the publish API under /api/v1/channels/.
// Anything else is 404 "Not Found", as in superset-websocket.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		s.serveUpgrade(w, r)
		return
	}
	switch path := r.URL.Path; {
	case path == "/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		writePlain(w, http.StatusOK, "OK")
	case path == "/ready" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.serveReady(w)
	case path == "/metrics" && s.gatherer != nil:
		promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	case strings.HasPrefix(path, publishPathPrefix) && !s.cfg.DisablePublish:
		s.servePublish(w, r)
	default:
		writePlain(w, http.StatusNotFound, "Not Found")
	}
}

// writePlain answers with exactly body and no Content-Type, as
// superset-websocket does for /health and unknown paths (contract §3).
// http.Error would add a newline, a Content-Type and
// X-Content-Type-Options; a nil Content-Type also stops net/http from
// sniffing one.
func writePlain(w http.ResponseWriter, code int, body string) {
	w.Header()["Content-Type"] = nil
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// readyStatus is the body of /ready.
type readyStatus struct {
	Status        string `json:"status"`
	Reason        string `json:"reason,omitempty"`
	NATS          string `json:"nats"`
	Stream        string `json:"stream"`
	Epoch         uint64 `json:"epoch"`
	DispatchedSeq uint64 `json:"dispatched_seq"`
	// StreamState is the stream as the periodic check last saw it.
	StreamState *streamCheck `json:"stream_state,omitempty"`
	Connections int64        `json:"connections"`
	Channels    int64        `json:"channels"`
	// Components holds the state of added components (the Redis mirror).
	Components map[string]string `json:"components,omitempty"`
}

func (s *Server) serveReady(w http.ResponseWriter) {
	ok, why := s.Ready()
	st := readyStatus{
		Status:        "ok",
		Reason:        why,
		NATS:          strings.ToLower(s.events.Conn().Status().String()),
		Stream:        s.events.Stream(),
		Epoch:         s.epoch,
		DispatchedSeq: s.hub.cursor.Load(),
		StreamState:   s.stream.Load(),
		Connections:   s.hub.connections.Load(),
		Channels:      s.hub.channels.Load(),
	}
	// Components are reported, not gating: a Redis outage stops the
	// mirror, not the sockets, and failing every node's readiness for it
	// would take the whole gateway out of its load balancer.
	st.Components, _ = s.componentStates()
	code := http.StatusOK
	if !ok {
		st.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(st)
}
