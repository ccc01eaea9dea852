package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// StatsdClient is the part of a statsd client the gateway uses. The
// datadog-go client (github.com/DataDog/datadog-go/v5/statsd) satisfies it.
type StatsdClient interface {
	Incr(name string, tags []string, rate float64) error
}

// Superset's statsd counter names (superset-websocket), kept so existing
// dashboards keep working. ws_connected_client counts accepted connections
// and is never decremented: it is not a gauge.
const (
	statsdConnected          = "ws_connected_client"
	statsdSendError          = "ws_client_send_error"
	statsdUpgradeRejected    = "ws_upgrade_rejected"
	statsdConnectionRejected = "ws_connection_rejected"
	statsdBackpressure       = "ws_client_backpressure_disconnect"
)

// metrics holds the gateway's Prometheus collectors and statsd client.
type metrics struct {
	statsd StatsdClient

	connections        prometheus.Gauge
	channels           prometheus.GaugeFunc
	accepted           prometheus.Counter
	upgradesRejected   *prometheus.CounterVec
	connRejected       *prometheus.CounterVec
	disconnects        *prometheus.CounterVec
	eventsIn           prometheus.Counter
	eventsInvalid      prometheus.Counter
	deliveries         prometheus.Counter
	deliveryBytes      prometheus.Counter
	writeSyscalls      prometheus.Counter
	sendErrors         prometheus.Counter
	dispatchedSeq      prometheus.Gauge
	replays            *prometheus.CounterVec
	replayedEvents     prometheus.Counter
	replayDuration     prometheus.Histogram
	replayTrimmed      prometheus.Counter
	lastIDInvalid      *prometheus.CounterVec
	ringBytes          prometheus.Gauge
	ringEvents         prometheus.Gauge
	publishes          *prometheus.CounterVec
	consumerErrors     prometheus.Counter
	clientFramesIgnore prometheus.Counter
}

// newMetrics creates and registers the collectors; channels reports the
// number of channels the node holds, read at each scrape.
func newMetrics(reg prometheus.Registerer, statsd StatsdClient, channels func() float64) *metrics {
	m := &metrics{
		statsd: statsd,
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbridge_connections", Help: "WebSocket connections open on this node, counted from registration (just before the 101 response).",
		}),
		channels: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushbridge_channels", Help: "Channels with at least one socket or cached event on this node.",
		}, channels),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_connections_accepted_total", Help: "WebSocket connections accepted.",
		}),
		upgradesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbridge_upgrades_rejected_total", Help: "Upgrade requests refused before the handshake, by reason.",
		}, []string{"reason"}),
		connRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbridge_connections_rejected_total", Help: "Connections closed with 1013 right after the handshake because a limit was reached, by limit.",
		}, []string{"limit"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbridge_disconnects_total", Help: "Sockets closed, by reason.",
		}, []string{"reason"}),
		eventsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_events_received_total", Help: "Events received from the live consumer.",
		}),
		eventsInvalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_events_invalid_total", Help: "Events skipped because their payload is not a JSON object.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_deliveries_total", Help: "Event frames written to sockets (live and replayed).",
		}),
		deliveryBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_delivery_bytes_total", Help: "Bytes of event frames written to sockets.",
		}),
		writeSyscalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_socket_writes_total", Help: "Socket write calls; deliveries divided by this is the write coalescing factor.",
		}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_send_errors_total", Help: "Socket writes that failed.",
		}),
		dispatchedSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbridge_dispatched_sequence", Help: "Stream sequence of the last event dispatched by this node.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbridge_replays_total", Help: "last_id replays, by source (ring, jetstream, time) and result.",
		}, []string{"source", "result"}),
		replayedEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_replayed_events_total", Help: "Events sent by replays.",
		}),
		replayDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pushbridge_replay_duration_seconds", Help: "Time from upgrade to the end of a replay.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		replayTrimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_replay_history_trimmed_total", Help: "Replays whose channel history after last_id was (possibly) trimmed: the client could not be made whole.",
		}),
		lastIDInvalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbridge_last_id_unusable_total", Help: "last_id values that could not be replayed exactly, by kind.",
		}, []string{"kind"}),
		ringBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbridge_ring_bytes", Help: "Bytes of recent events cached for replay.",
		}),
		ringEvents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbridge_ring_events", Help: "Recent events cached for replay.",
		}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbridge_http_publishes_total", Help: "HTTP publish API requests, by result.",
		}, []string{"result"}),
		consumerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_live_consumer_errors_total", Help: "Errors reported by the live JetStream consumer (it recovers by itself).",
		}),
		clientFramesIgnore: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushbridge_client_messages_ignored_total", Help: "Data messages sent by clients (the protocol has none; they are discarded).",
		}),
	}
	reg.MustRegister(m.connections, m.channels, m.accepted, m.upgradesRejected, m.connRejected, m.disconnects,
		m.eventsIn, m.eventsInvalid, m.deliveries, m.deliveryBytes, m.writeSyscalls, m.sendErrors, m.dispatchedSeq,
		m.replays, m.replayedEvents, m.replayDuration, m.replayTrimmed, m.lastIDInvalid, m.ringBytes, m.ringEvents,
		m.publishes, m.consumerErrors, m.clientFramesIgnore)
	return m
}

// incr sends a statsd counter increment; failures are not the client's
// problem and statsd is fire-and-forget.
func (m *metrics) incr(name string) {
	if m.statsd != nil {
		_ = m.statsd.Incr(name, nil, 1)
	}
}
