package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values below
// 2^subBits are counted exactly; above that, each power of two is split into
// 2^(subBits-1) equal buckets, so a bucket's width is at most 1/128 of its
// lower bound (0.8 % relative error). Values are nanoseconds; the top bucket
// ends past 2^46 ns (about 19 hours), and larger values are clamped into it.
const (
	subBits     = 8
	subCount    = 1 << subBits // exact buckets [0, 256)
	halfCount   = subCount / 2 // buckets per power of two above that
	maxShift    = 46 - subBits // largest shift kept
	bucketCount = subCount + maxShift*halfCount
)

// Histogram counts durations in bounded memory (about 40 KiB) with a
// relative error below 1 %. Record is safe for concurrent use and does not
// allocate; reading while recording gives a consistent-enough snapshot for
// progress lines, and an exact one once recording has stopped.
type Histogram struct {
	counts [bucketCount]atomic.Int64
	total  atomic.Int64
	sum    atomic.Int64
	min    atomic.Int64
	max    atomic.Int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf returns the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	u := uint64(v)
	n := bits.Len64(u)
	if n <= subBits {
		return int(u)
	}
	shift := n - subBits
	if shift > maxShift {
		return bucketCount - 1
	}
	top := u >> uint(shift) // in [halfCount, subCount)
	return subCount + (shift-1)*halfCount + int(top) - halfCount
}

// bucketBounds returns the smallest and largest value counted in bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	j := i - subCount
	shift := j/halfCount + 1
	top := int64(j%halfCount + halfCount)
	lo = top << uint(shift)
	hi = (top+1)<<uint(shift) - 1
	return lo, hi
}

// Record counts one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count is the number of values recorded.
func (h *Histogram) Count() int64 { return h.total.Load() }

// Max is the largest value recorded (0 when empty).
func (h *Histogram) Max() int64 {
	if h.Count() == 0 {
		return 0
	}
	return h.max.Load()
}

// Min is the smallest value recorded (0 when empty).
func (h *Histogram) Min() int64 {
	if h.Count() == 0 {
		return 0
	}
	return h.min.Load()
}

// Mean is the average value (0 when empty).
func (h *Histogram) Mean() float64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value at quantile q in [0, 1]: the largest value of
// the bucket that holds the ceil(q*count)-th smallest value, capped by the
// exact maximum. It is never below the true quantile and at most 0.8 %
// above it.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := int64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			_, hi := bucketBounds(i)
			return min(hi, h.Max())
		}
	}
	return h.Max()
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.Count() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
	for {
		m := h.max.Load()
		if o.max.Load() <= m || h.max.CompareAndSwap(m, o.max.Load()) {
			break
		}
	}
	for {
		m := h.min.Load()
		if o.min.Load() >= m || h.min.CompareAndSwap(m, o.min.Load()) {
			break
		}
	}
}

// LatencySummary is a histogram's summary in milliseconds, as reported.
type LatencySummary struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Summary summarises the histogram, read as nanoseconds.
func (h *Histogram) Summary() LatencySummary {
	return LatencySummary{
		Count:  h.Count(),
		MinMs:  ms(h.Min()),
		MeanMs: roundMs(h.Mean() / 1e6),
		P50Ms:  ms(h.Quantile(0.50)),
		P90Ms:  ms(h.Quantile(0.90)),
		P99Ms:  ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)),
		MaxMs:  ms(h.Max()),
	}
}

func ms(ns int64) float64 { return roundMs(float64(ns) / float64(time.Millisecond)) }

// roundMs keeps three decimals (microseconds) for readable JSON.
func roundMs(v float64) float64 { return math.Round(v*1000) / 1000 }
