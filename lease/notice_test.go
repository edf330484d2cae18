package lease_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/lease"
)

// In lease mode the low-balance crossing is seen where the lease's use is
// recorded, written in that commit, and the settlement of the lease makes
// the same notice, not a second.
func TestLowBalanceCrossingIsRecordedWithTheLeaseUse(t *testing.T) {
	st := newStore(t)
	var mu sync.Mutex
	var scheduled []billing.NoticeTask
	st.OnNotices(func(_ context.Context, ts []billing.NoticeTask) {
		mu.Lock()
		defer mu.Unlock()
		scheduled = append(scheduled, ts...)
	})
	hash := account(t, st, "lena", 50) // Free: threshold 10
	m := lease.New(st, clock.Real{}, lease.Config{TTL: time.Minute, Idle: time.Minute, MinBlock: 50}, nil)
	ctx := context.Background()
	for i := range 41 {
		if _, err := m.DebitKey(ctx, hash, 1, time.Now()); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	// The lease is still out: the notice came with the use.
	e, err := st.Notice(ctx, "lena", "low-balance-1")
	if err != nil {
		t.Fatalf("no low-balance notice while the lease is out: %v", err)
	}
	if e.Data.Balance != 9 || e.Data.Threshold != 10 || e.Type != billing.NoticeLowBalance {
		t.Errorf("notice = %+v", e.Notice)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := balance(t, st, "lena"); got != 9 {
		t.Fatalf("balance after the lease went back = %d", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range scheduled {
		if s.ID != "low-balance-1" {
			t.Errorf("another notice: %+v (all: %+v)", s, scheduled)
		}
	}
	if len(scheduled) == 0 {
		t.Fatal("nothing scheduled")
	}
}
