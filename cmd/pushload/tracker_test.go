package main

import "testing"

func TestTracker(t *testing.T) {
	cases := []struct {
		name                  string
		base                  int64
		seq                   []int64
		upTo                  int64
		lost, dup, ooo, early int64
	}{
		{"in order", 0, []int64{1, 2, 3, 4}, 4, 0, 0, 0, 0},
		{"tail missing", 0, []int64{1, 2}, 4, 2, 0, 0, 0},
		{"gap", 0, []int64{1, 2, 4, 5}, 5, 1, 0, 0, 0},
		{"duplicate", 0, []int64{1, 2, 2, 3}, 3, 0, 1, 0, 0},
		{"swap", 0, []int64{1, 3, 2, 4}, 4, 0, 0, 1, 0},
		{"late fill in the middle of a gap", 0, []int64{1, 6, 3, 3, 5}, 6, 2, 1, 2, 0},
		{"before subscription", 10, []int64{9, 10, 11, 12}, 12, 0, 0, 0, 2},
		{"nothing received", 5, nil, 9, 4, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(tc.base)
			for _, n := range tc.seq {
				tr.observe(n)
			}
			if got := tr.missing(tc.upTo, nil); got != tc.lost {
				t.Errorf("lost %d, want %d", got, tc.lost)
			}
			if tr.duplicates != tc.dup || tr.outOfOrder != tc.ooo || tr.early != tc.early {
				t.Errorf("dup %d ooo %d early %d, want %d %d %d", tr.duplicates, tr.outOfOrder, tr.early, tc.dup, tc.ooo, tc.early)
			}
		})
	}
}

func TestTrackerFailedPublishesAreNotLost(t *testing.T) {
	tr := newTracker(0)
	for _, n := range []int64{1, 2, 5} {
		tr.observe(n)
	}
	failed := map[int64]bool{3: true, 6: true}
	count := func(lo, hi int64) int64 {
		var c int64
		for n := lo; n <= hi; n++ {
			if failed[n] {
				c++
			}
		}
		return c
	}
	if got := tr.missing(6, count); got != 1 { // 4 is lost; 3 and 6 never existed
		t.Fatalf("lost %d, want 1", got)
	}
}

func TestTrackerWholeAndIDs(t *testing.T) {
	tr := newTracker(0)
	tr.observe(1)
	tr.observe(3)
	if tr.wholeUpTo(3) || !tr.wholeUpTo(1) {
		t.Fatal("whole up to 1 only")
	}
	tr.observe(2)
	if !tr.wholeUpTo(3) {
		t.Fatal("whole up to 3 after the fill")
	}
	for _, id := range []string{"5-1", "5-2", "5-2", "5-1", "6-0", "x"} {
		tr.observeID([]byte(id))
	}
	if tr.idRegress != 2 || tr.idRepeat != 1 || tr.idUnparsed != 1 || tr.idA != 6 || tr.idB != 0 {
		t.Fatalf("id regress %d repeat %d unparsed %d last %d-%d", tr.idRegress, tr.idRepeat, tr.idUnparsed, tr.idA, tr.idB)
	}
}

func TestTrackerGapOverflowIsBounded(t *testing.T) {
	tr := newTracker(0)
	for n := int64(1); n <= 4*maxGaps; n += 2 {
		tr.observe(n)
	}
	if len(tr.gaps) > maxGaps || !tr.overflow {
		t.Fatalf("gaps %d overflow %v", len(tr.gaps), tr.overflow)
	}
}
