package ingest

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	read          prometheus.Counter
	published     prometheus.Counter
	duplicates    prometheus.Counter
	skipped       *prometheus.CounterVec
	deadLettered  prometheus.Counter
	rewinds       prometheus.Counter
	gaps          prometheus.Counter
	lagEntries    prometheus.Gauge
	lagSeconds    prometheus.Gauge
	checkpointMs  prometheus.Gauge
	leader        prometheus.Gauge
	redisErrors   prometheus.Counter
	publishErrors prometheus.Counter
	ackLatency    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		read:          prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_entries_read_total", Help: "Firehose entries read from Redis (re-reads after a rewind included)."}),
		published:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_entries_published_total", Help: "Entries stored in JetStream for the first time."}),
		duplicates:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_duplicates_total", Help: "Entries JetStream already had (absorbed by dedupe or found stored on resume)."}),
		skipped:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushbridge_ingest_entries_skipped_total", Help: "Entries that cannot be mirrored, by reason."}, []string{"reason"}),
		deadLettered:  prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_dead_lettered_total", Help: "Skipped entries published to the dead-letter subject."}),
		rewinds:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_rewinds_total", Help: "Times a failed publish made the mirror rewind to its last acknowledged entry."}),
		gaps:          prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_gaps_total", Help: "Ranges of firehose entries found trimmed or deleted before the mirror read them."}),
		lagEntries:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushbridge_ingest_lag_entries", Help: "Firehose entries not yet acknowledged by JetStream (capped at 10000; 0 while not leading)."}),
		lagSeconds:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushbridge_ingest_lag_seconds", Help: "Time between the firehose tip and the last acknowledged entry's Redis id."}),
		checkpointMs:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushbridge_ingest_checkpoint_timestamp_ms", Help: "Millisecond part of the checkpoint's Redis id."}),
		leader:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushbridge_ingest_leader", Help: "1 while this mirror holds the lease and publishes."}),
		redisErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_redis_errors_total", Help: "Redis commands that failed."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pushbridge_ingest_publish_errors_total", Help: "JetStream publishes that failed (each causes a rewind, a skip, or a retried term)."}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pushbridge_ingest_xadd_to_ack_seconds", Help: "Time from an entry's Redis id (its XADD) to its JetStream acknowledgement.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5, 30},
		}),
	}
	reg.MustRegister(m.read, m.published, m.duplicates, m.skipped, m.deadLettered, m.rewinds, m.gaps,
		m.lagEntries, m.lagSeconds, m.checkpointMs, m.leader, m.redisErrors, m.publishErrors, m.ackLatency)
	return m
}
