package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times; it is 100
// on every Linux architecture Go supports.
const clockTicks = 100

// probe samples the server under test: its resident memory and CPU time
// from /proc (when given a PID) and a few Prometheus metrics (when it
// exposes them).
type probe struct {
	pid        int
	metricsURL string
	client     *http.Client
}

func newProbe(pid int, metricsURL string) *probe {
	if metricsURL == "none" {
		metricsURL = ""
	}
	return &probe{pid: pid, metricsURL: metricsURL, client: &http.Client{Timeout: 5 * time.Second}}
}

// sample is the server's state at one moment.
type sample struct {
	at         time.Time
	rss        int64   // bytes, 0 when unknown
	cpu        float64 // user+system seconds, -1 when unknown
	metrics    map[string]float64
	metricsErr string
	slab       int64   // kernel slab of the whole machine, bytes
	selfCPU    float64 // the load tool's own CPU seconds
}

// take samples everything it can; failures leave fields empty.
func (p *probe) take(ctx context.Context) sample {
	s := sample{at: time.Now(), cpu: -1}
	if p.pid > 0 {
		s.rss, _ = procStatusBytes(p.pid, "VmRSS:")
		if c, err := procCPU(p.pid); err == nil {
			s.cpu = c
		}
	}
	s.slab, _ = meminfoBytes("Slab:")
	s.selfCPU, _ = procCPU(os.Getpid())
	if p.metricsURL != "" {
		m, err := scrapeMetrics(ctx, p.client, p.metricsURL)
		if err != nil {
			s.metricsErr = err.Error()
		}
		s.metrics = m
	}
	return s
}

// rssOnly reads the server's RSS alone (cheap, for progress lines).
func (p *probe) rssOnly() int64 {
	if p.pid <= 0 {
		return 0
	}
	v, _ := procStatusBytes(p.pid, "VmRSS:")
	return v
}

// procStatusBytes reads a "<key> <n> kB" line of /proc/<pid>/status.
func procStatusBytes(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("server pid %d: %w", pid, err)
	}
	return kbLine(b, key)
}

func meminfoBytes(key string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return kbLine(b, key)
}

func kbLine(b []byte, key string) (int64, error) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			f := strings.Fields(string(rest))
			if len(f) == 0 {
				break
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return v * 1024, nil
		}
	}
	return 0, fmt.Errorf("%s not found", key)
}

// procCPU returns the process's user+system CPU seconds from
// /proc/<pid>/stat (fields 14 and 15).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad cpu fields", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// keptMetric reports whether a metric name is worth keeping.
func keptMetric(name string) bool {
	switch name {
	case "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes",
		"go_memstats_heap_alloc_bytes", "go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total":
		return true
	}
	return strings.HasPrefix(name, "pushbridge_") || strings.HasPrefix(name, "baseline_")
}

// scrapeMetrics reads a Prometheus text exposition and keeps the samples
// of interest, keyed by name and labels as written. Histogram buckets are
// dropped.
func scrapeMetrics(ctx context.Context, c *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		key := line[:sp]
		name := key
		if j := strings.IndexByte(key, '{'); j >= 0 {
			name = key[:j]
		}
		if !keptMetric(name) || strings.HasSuffix(name, "_bucket") {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[key] = v
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// metricsDelta returns after-before for every counter-like key that
// changed, and the after value of gauges (names without _total).
func metricsDelta(before, after map[string]float64) map[string]float64 {
	if after == nil {
		return nil
	}
	out := make(map[string]float64)
	for k, a := range after {
		b := before[k]
		if a == b {
			continue
		}
		out[k] = a - b
	}
	return out
}

// selfMemory is the load tool's own memory, to show what a connection
// costs the client.
type selfMemory struct {
	RSS        int64 `json:"rss_bytes"`
	HeapInuse  int64 `json:"heap_inuse_bytes"`
	StackInuse int64 `json:"stack_inuse_bytes"`
	Goroutines int   `json:"goroutines"`
}

func readSelfMemory() selfMemory {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := procStatusBytes(os.Getpid(), "VmRSS:")
	return selfMemory{RSS: rss, HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse), Goroutines: runtime.NumGoroutine()}
}
