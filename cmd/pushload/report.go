package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Result is the JSON result of one run (--out) and the source of the human
// summary. Sections that do not apply to a scenario are omitted.
type Result struct {
	Tool      string         `json:"tool"`
	Scenario  string         `json:"scenario"`
	StartedAt time.Time      `json:"started_at"`
	Seconds   float64        `json:"seconds"`
	Target    string         `json:"target,omitempty"`
	Publisher string         `json:"publisher,omitempty"`
	Flags     map[string]any `json:"flags"`
	Error     string         `json:"error,omitempty"`

	Connections *ConnSummary     `json:"connections,omitempty"`
	Publish     *PublishSummary  `json:"publish,omitempty"`
	Delivery    *DeliverySummary `json:"delivery,omitempty"`
	Latency     *LatencySummary  `json:"latency,omitempty"`
	Accounting  *Accounting      `json:"accounting,omitempty"`
	Phases      []PhaseSummary   `json:"phases,omitempty"`
	Server      *ServerSummary   `json:"server,omitempty"`
	Client      *ClientSummary   `json:"client,omitempty"`

	Idle      *IdleResult      `json:"idle,omitempty"`
	Ramp      *RampResult      `json:"ramp,omitempty"`
	Reconnect *ReconnectResult `json:"reconnect,omitempty"`
	Slow      *SlowResult      `json:"slow,omitempty"`
	Baseline  *BaselineResult  `json:"baseline_js,omitempty"`

	Notes []string `json:"notes,omitempty"`
}

// ConnSummary describes the connections.
type ConnSummary struct {
	Clients      int           `json:"clients"`
	Channels     int           `json:"channels"`
	SourceAddrs  int           `json:"source_addrs"`
	Connect      connectResult `json:"connect"`
	OpenAtEnd    int64         `json:"open_at_end"`
	ServerClosed int64         `json:"closed_by_server"`
	DialErrors   int64         `json:"dial_errors"`
	Errors       []string      `json:"errors,omitempty"`
}

// PublishSummary describes what the tool published.
type PublishSummary struct {
	Events       int64    `json:"events"`
	Failed       int64    `json:"failed"`
	TargetRate   float64  `json:"target_rate"`
	AchievedRate float64  `json:"achieved_rate"`
	Seconds      float64  `json:"seconds"`
	Errors       []string `json:"errors,omitempty"`
}

// DeliverySummary describes what the clients received.
type DeliverySummary struct {
	// Frames counts every event frame, duplicates included.
	Frames int64 `json:"frames"`
	// Expected deliveries of events published after subscription, and
	// how many of them arrived.
	Expected int64 `json:"expected"`
	Received int64 `json:"received"`
	// PerSecond is Received over the time from the first publish to the
	// last delivery: the sustained delivery rate.
	PerSecond    float64 `json:"per_second"`
	Foreign      int64   `json:"foreign_frames,omitempty"`
	WrongChannel int64   `json:"wrong_channel,omitempty"`
	Outstanding  int64   `json:"outstanding_after_drain"`
}

// Accounting sums the per-client accounting.
type Accounting struct {
	Lost          int64 `json:"lost"`
	Duplicated    int64 `json:"duplicated"`
	OutOfOrder    int64 `json:"out_of_order"`
	Early         int64 `json:"early"`
	IDRegress     int64 `json:"id_not_increasing"`
	IDRepeat      int64 `json:"id_repeated"`
	IDUnparsed    int64 `json:"id_unparsed,omitempty"`
	ClientsLost   int   `json:"clients_with_loss"`
	ClientsDup    int   `json:"clients_with_duplicates"`
	ClientsOOO    int   `json:"clients_with_reordering"`
	ClientsClosed int   `json:"clients_closed_by_server"`
	Approximate   bool  `json:"approximate,omitempty"`
}

// PhaseSummary is one phase's figures.
type PhaseSummary struct {
	Name         string         `json:"name"`
	TargetRate   float64        `json:"target_rate"`
	Events       int64          `json:"events"`
	AchievedRate float64        `json:"achieved_rate"`
	Expected     int64          `json:"expected_deliveries"`
	Received     int64          `json:"received"`
	PerSecond    float64        `json:"deliveries_per_second"`
	Latency      LatencySummary `json:"latency"`
}

// ServerSummary is what the probe saw of the server.
type ServerSummary struct {
	PID              int     `json:"pid,omitempty"`
	RSSBefore        int64   `json:"rss_before_bytes,omitempty"`
	RSSAfter         int64   `json:"rss_after_bytes,omitempty"`
	RSSMax           int64   `json:"rss_max_bytes,omitempty"`
	HeapInuseBefore  float64 `json:"heap_inuse_before_bytes,omitempty"`
	HeapInuseAfter   float64 `json:"heap_inuse_after_bytes,omitempty"`
	CPUSeconds       float64 `json:"cpu_seconds,omitempty"`
	CPUPerDeliveryUs float64 `json:"cpu_us_per_delivery,omitempty"`
	CPUUtilisation   float64 `json:"cpu_cores_used,omitempty"`
	// ClientCPU* are the load tool's own CPU over the same window: on a
	// shared machine it competes with the server.
	ClientCPUSeconds     float64            `json:"client_cpu_seconds,omitempty"`
	ClientCPUPerDelivery float64            `json:"client_cpu_us_per_delivery,omitempty"`
	MetricsDelta         map[string]float64 `json:"metrics_delta,omitempty"`
	MetricsUnavailable   string             `json:"metrics_unavailable,omitempty"`
}

// ClientSummary is the load tool's own cost.
type ClientSummary struct {
	Before        selfMemory `json:"before"`
	After         selfMemory `json:"after"`
	BytesPerConn  float64    `json:"rss_bytes_per_conn,omitempty"`
	OpenFileLimit uint64     `json:"open_file_limit"`
}

// writeJSON writes the result to path.
func (r *Result) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// printSummary writes the human summary.
func (r *Result) printSummary(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("")
	p("== pushload %s: %s (%.1fs)", r.Scenario, r.Target, r.Seconds)
	if r.Error != "" {
		p("ERROR: %s", r.Error)
	}
	if c := r.Connections; c != nil {
		p("connections  %d clients over %d channels from %d source addresses: %d connected in %.2fs (%.0f/s), %d failed, %d closed by the server, %d open at the end",
			c.Clients, c.Channels, c.SourceAddrs, c.Connect.Connected, c.Connect.Seconds, c.Connect.PerSecond, c.Connect.Failed, c.ServerClosed, c.OpenAtEnd)
		for _, e := range c.Errors {
			p("             error: %s", e)
		}
	}
	if pb := r.Publish; pb != nil {
		p("published    %d events via %s in %.2fs: %.0f/s (target %.0f/s), %d failed", pb.Events, r.Publisher, pb.Seconds, pb.AchievedRate, pb.TargetRate, pb.Failed)
		for _, e := range pb.Errors {
			p("             error: %s", e)
		}
	}
	if d := r.Delivery; d != nil {
		p("delivered    %d of %d expected (%d frames): %.0f deliveries/s; %d outstanding after drain", d.Received, d.Expected, d.Frames, d.PerSecond, d.Outstanding)
		if d.Foreign > 0 || d.WrongChannel > 0 {
			p("             %d frames without pushload keys, %d for the wrong channel", d.Foreign, d.WrongChannel)
		}
	}
	if l := r.Latency; l != nil && l.Count > 0 {
		p("latency      p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms (%d samples)", l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.Count)
	}
	if a := r.Accounting; a != nil {
		p("accounting   lost %d, duplicated %d, out of order %d (clients: %d/%d/%d); ids not increasing %d; early %d; clients closed by server %d",
			a.Lost, a.Duplicated, a.OutOfOrder, a.ClientsLost, a.ClientsDup, a.ClientsOOO, a.IDRegress, a.Early, a.ClientsClosed)
		if a.Approximate {
			p("             (approximate: too many separate gaps for exact accounting)")
		}
	}
	if len(r.Phases) > 1 {
		for _, ph := range r.Phases {
			p("phase        %-14s rate %7.0f/s  pub %7.0f/s  deliv %8.0f/s  recv %d/%d  p50 %.3f  p99 %.3f  max %.3f ms",
				ph.Name, ph.TargetRate, ph.AchievedRate, ph.PerSecond, ph.Received, ph.Expected, ph.Latency.P50Ms, ph.Latency.P99Ms, ph.Latency.MaxMs)
		}
	}
	if rp := r.Ramp; rp != nil {
		p("ramp         highest rate with p99 <= %.1f ms: %.0f events/s = %.0f deliveries/s (%s)", rp.P99BoundMs, rp.BestRate, rp.BestDeliveriesPerSecond, rp.StopReason)
	}
	if rc := r.Reconnect; rc != nil {
		for _, rd := range rc.Rounds {
			p("reconnect    round %d: %d clients, %d events behind each: all whole in %.1f ms (dials %.1f ms); per client p50 %.1f  p99 %.1f  max %.1f ms; %d not whole, %d dial failures",
				rd.Round, rd.Clients, rd.Behind, rd.AllWholeMs, rd.DialMs, rd.PerClient.P50Ms, rd.PerClient.P99Ms, rd.PerClient.MaxMs, rd.NotWhole, rd.DialFailures)
			p("             replay after each client's handshake: p50 %.2f  p99 %.2f  max %.2f ms", rd.Replay.P50Ms, rd.Replay.P99Ms, rd.Replay.MaxMs)
		}
	}
	if s := r.Slow; s != nil {
		p("slow         %d never-reading clients: others' p99 %.3f ms without, %.3f ms with (x%.2f); %d closed by the server, %d still draining queued data, %d open and quiet",
			s.SlowClients, s.P99WithoutMs, s.P99WithMs, s.P99Ratio, s.SlowClosed, s.SlowDraining, s.SlowOpen)
	}
	if id := r.Idle; id != nil {
		p("idle         %d connections: server RSS +%s (%.0f B/conn), Go heap +%s (%.0f B/conn), stacks +%s; client %.0f B/conn; kernel slab +%s (both ends)",
			id.Connections, bytesStr(id.ServerRSSDelta), id.ServerRSSPerConn, bytesStr(int64(id.ServerHeapDelta)), id.ServerHeapPerConn,
			bytesStr(int64(id.ServerStackDelta)), id.ClientRSSPerConn, bytesStr(id.SlabDelta))
	}
	if b := r.Baseline; b != nil {
		p("jetstream    %d published (%.0f/s), %d consumed: %.0f events/s sustained; latency p50 %.3f p99 %.3f ms",
			b.Published, b.PublishedPerSecond, b.Consumed, b.ConsumedPerSecond, b.Latency.P50Ms, b.Latency.P99Ms)
	}
	if s := r.Server; s != nil {
		line := fmt.Sprintf("server       pid %d", s.PID)
		if s.RSSAfter > 0 {
			line += fmt.Sprintf(", RSS %s -> %s (max %s)", bytesStr(s.RSSBefore), bytesStr(s.RSSAfter), bytesStr(s.RSSMax))
		}
		if s.CPUSeconds > 0 {
			line += fmt.Sprintf(", CPU %.2fs (%.2f cores)", s.CPUSeconds, s.CPUUtilisation)
		}
		if s.CPUPerDeliveryUs > 0 {
			line += fmt.Sprintf(", %.1f µs/delivery", s.CPUPerDeliveryUs)
		}
		if s.ClientCPUSeconds > 0 {
			line += fmt.Sprintf("; load tool CPU %.2fs", s.ClientCPUSeconds)
			if s.ClientCPUPerDelivery > 0 {
				line += fmt.Sprintf(" (%.1f µs/delivery)", s.ClientCPUPerDelivery)
			}
		}
		p("%s", line)
		keys := make([]string, 0, len(s.MetricsDelta))
		for k := range s.MetricsDelta {
			if strings.Contains(k, "disconnects") || strings.Contains(k, "errors") || strings.Contains(k, "replays_total") ||
				strings.Contains(k, "rejected") || strings.Contains(k, "unusable") || strings.Contains(k, "trimmed") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p("             %s %+g", k, s.MetricsDelta[k])
		}
	}
	for _, n := range r.Notes {
		p("note         %s", n)
	}
}

func bytesStr(n int64) string {
	neg := ""
	if n < 0 {
		neg, n = "-", -n
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%s%.2f GiB", neg, float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%s%.1f MiB", neg, float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%s%.1f KiB", neg, float64(n)/(1<<10))
	}
	return fmt.Sprintf("%s%d B", neg, n)
}
