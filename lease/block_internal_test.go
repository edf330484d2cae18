package lease

import (
	"testing"
	"time"
)

// The block that follows a retired lease: it doubles while the rate it was
// spent at would spend the block within the horizon (15 s here),
// halves when the lease comes back mostly unused, and stays between 10 and
// 1000.
func TestBlockSizeFollowsHowFastALeaseWasSpent(t *testing.T) {
	z := blockSizer{min: 10, max: 1000, horizon: 15 * time.Second}
	tests := []struct {
		name         string
		block        int64
		amount, used int64
		lasted       time.Duration
		want         int64
	}{
		{"spent in a moment: the largest block at once", 10, 10, 10, 0, 1000},
		{"10 a second: doubles until 15 s of calls fit", 10, 10, 10, time.Second, 160},
		{"half spent, 50 a second: doubles until 15 s fit", 100, 100, 50, time.Second, 800},
		{"spent over more than the horizon: stays", 10, 10, 10, 20 * time.Second, 10},
		{"capped by the balance: does not grow", 100, 40, 40, 0, 100},
		{"grows no larger than the largest", 800, 800, 800, time.Second, 1000},
		{"mostly unused: halves", 1000, 1000, 1, time.Second, 500},
		{"less than half used: halves", 400, 400, 199, time.Second, 200},
		{"halves no smaller than the smallest", 15, 15, 1, time.Second, 10},
		{"the smallest, unused: stays", 10, 10, 0, time.Second, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := z.next(tt.block, tt.amount, tt.used, tt.lasted); got != tt.want {
				t.Errorf("block %d after %d of %d spent in %s: %d, want %d", tt.block, tt.used, tt.amount, tt.lasted, got, tt.want)
			}
		})
	}
}

// The lease a call asks for: the block, or the call's cost if larger, and
// once the balance beside the leases is known no more than half of it (the
// rest is left to other instances), but never less than the cost.
func TestLeaseWantedLeavesHalfTheBalance(t *testing.T) {
	tests := []struct {
		name    string
		block   int64
		balance int64
		seen    bool
		cost    int64
		want    int64
	}{
		{"balance not seen yet: the block", 10, 0, false, 1, 10},
		{"a call dearer than the block: its cost", 10, 0, false, 25, 25},
		{"plenty beside: the block", 10, 1000, true, 1, 10},
		{"little beside: half of it", 1000, 300, true, 1, 150},
		{"one credit left: all of it", 10, 1, true, 1, 1},
		{"half the balance is less than the cost: the cost", 10, 6, true, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &account{block: tt.block, balance: tt.balance, seen: tt.seen}
			if got := a.want(tt.cost); got != tt.want {
				t.Errorf("want(%d) with block %d, balance %d (seen %t): %d, want %d", tt.cost, tt.block, tt.balance, tt.seen, got, tt.want)
			}
		})
	}
}
