package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactQuantile is the nearest-rank quantile of a sorted sample.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramQuantilesMatchSortedSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"uniform µs":  func() int64 { return rng.Int64N(1_000_000) },
		"lognormal":   func() int64 { return int64(math.Exp(rng.NormFloat64()*1.5 + 13)) },
		"small exact": func() int64 { return rng.Int64N(200) },
		"with outliers": func() int64 {
			v := rng.Int64N(2_000_000)
			if rng.IntN(1000) == 0 {
				v *= 5000
			}
			return v
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			h := NewHistogram()
			vals := make([]int64, 50_000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exactQuantile(vals, q)
				got := h.Quantile(q)
				// Never below the true value, at most 1/128 above it.
				if got < want || float64(got-want) > float64(want)/128+1 {
					t.Errorf("q%.3f = %d, want %d (within +0.8%%)", q, got, want)
				}
			}
			if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] || h.Count() != int64(len(vals)) {
				t.Errorf("min/max/count = %d/%d/%d, want %d/%d/%d", h.Min(), h.Max(), h.Count(), vals[0], vals[len(vals)-1], len(vals))
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	prevHi := int64(-1)
	for i := range bucketCount {
		lo, hi := bucketBounds(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d, %d], previous ended at %d", i, lo, hi, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucketOf(%d)=%d bucketOf(%d)=%d, want %d", lo, bucketOf(lo), hi, bucketOf(hi), i)
		}
		prevHi = hi
	}
	if got := bucketOf(math.MaxInt64); got != bucketCount-1 {
		t.Fatalf("huge values land in bucket %d, want the last", got)
	}
}

func TestHistogramEdgeCases(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(0.99) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	h.Record(-5) // clock skew: counted as 0
	h.Record(1_000_000)
	if h.Quantile(0.5) != 0 || h.Quantile(1) != 1_000_000 {
		t.Fatalf("q50 %d q100 %d", h.Quantile(0.5), h.Quantile(1))
	}
	o := NewHistogram()
	o.Record(7)
	h.Merge(o)
	if h.Count() != 3 || h.Quantile(0.5) != 7 {
		t.Fatalf("merged count %d q50 %d", h.Count(), h.Quantile(0.5))
	}
	s := h.Summary()
	if s.MaxMs != 1 || s.Count != 3 {
		t.Fatalf("summary %+v", s)
	}
}
