package lease_test

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// memStore answers at once, so the benchmarks measure the manager alone:
// the in-process cost of a call served from a live lease.
type memStore struct{}

func (memStore) Key(context.Context, string) (billing.APIKey, error) {
	return billing.APIKey{UID: "bench", LastUsedAt: time.Now()}, nil
}

func (memStore) TakeLease(_ context.Context, r store.LeaseRequest, now time.Time) (store.Taken, error) {
	return store.Taken{Lease: billing.Lease{ID: r.ID, Owner: r.Owner, Amount: r.Want, TakenAt: now, ExpiresAt: now.Add(r.TTL)}, Balance: 1 << 40}, nil
}

func (memStore) WriteJournal(_ context.Context, w store.JournalWrite) (time.Time, error) {
	return time.Unix(0, w.Seq), nil
}

func (memStore) ReadJournal(context.Context, string) (store.Journal, error) {
	return store.Journal{}, nil
}

func (memStore) WatchRevocations(ctx context.Context, _ time.Time, _ func(string)) error {
	<-ctx.Done()
	return ctx.Err()
}

func (memStore) ReturnLease(context.Context, string, time.Time, ...store.LeaseUse) (int64, error) {
	return 1 << 40, nil
}

// BenchmarkDebitKeyFromLease is one client's calls one after another; it
// reports the median call (p50-µs).
func BenchmarkDebitKeyFromLease(b *testing.B) {
	m := lease.New(memStore{}, clock.Real{}, lease.Config{MaxBlock: 1_000_000}, nil)
	defer m.Close(context.Background())
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		t0 := time.Now()
		if _, err := m.DebitKey(ctx, "hash", 1, t0); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
	}
	b.ReportMetric(median(lat), "p50-µs")
}

// BenchmarkDebitKeyFromLeaseParallel is 50 concurrent clients on one key,
// their calls flushed together; it reports the median call (p50-µs).
func BenchmarkDebitKeyFromLeaseParallel(b *testing.B) {
	m := lease.New(memStore{}, clock.Real{}, lease.Config{MaxBlock: 1_000_000, Linger: -1}, nil)
	defer m.Close(context.Background())
	ctx := context.Background()
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(max(1, 50/max(1, testingProcs())))
	b.RunParallel(func(pb *testing.PB) {
		var lat []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if _, err := m.DebitKey(ctx, "hash", 1, t0); err != nil {
				b.Error(err)
				return
			}
			if len(lat) < 1<<14 {
				lat = append(lat, time.Since(t0))
			}
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.ReportMetric(median(all), "p50-µs")
}

func median(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[len(d)/2].Nanoseconds()) / 1000
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
