package ratelimit_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/ratelimit"
)

// pools is an in-memory Pools, a copy per claim as a transaction reads.
type pools struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (p *pools) ClaimRate(_ context.Context, hash string, fn func(*billing.RatePool)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pool billing.RatePool
	if raw, ok := p.m[hash]; ok {
		if err := json.Unmarshal(raw, &pool); err != nil {
			return err
		}
	}
	fn(&pool)
	raw, err := json.Marshal(pool)
	p.m[hash] = raw
	return err
}

// Two instances serving one key, called as fast as they answer on a
// clock that moves 10 ms a step, admit at most burst + perSecond calls in
// any second, and together close to the key's rate.
func TestTwoInstancesHoldTheKeyToItsRatePlusBurst(t *testing.T) {
	for _, l := range []billing.KeyLimits{{PerSecond: 1, Burst: 1}, {PerSecond: 5, Burst: 5}, {PerSecond: 10, Burst: 30}, {PerSecond: 100, Burst: 7}} {
		start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		clk := clock.NewFixed(start)
		p := &pools{m: map[string][]byte{}}
		a := ratelimit.New(p, clk, ratelimit.Config{Owner: "a"}, nil)
		b := ratelimit.New(p, clk, ratelimit.Config{Owner: "b"}, nil)
		var admitted []time.Time
		const steps = 3000 // 30 s
		for i := range steps {
			now := start.Add(time.Duration(i) * 10 * time.Millisecond)
			clk.Set(now)
			for _, lim := range []*ratelimit.Limiter{a, b} {
				if lim.Allow(context.Background(), "k", l, now) == nil {
					admitted = append(admitted, now)
				}
			}
			time.Sleep(0) // let background renewals run
			if i%50 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		most := 0
		for i, at := range admitted {
			n := 0
			for _, other := range admitted[i:] {
				if other.Sub(at) >= time.Second {
					break
				}
				n++
			}
			most = max(most, n)
		}
		if bound := int(l.PerSecond + l.Burst); most > bound {
			t.Errorf("%+v: %d calls in one second, bound %d", l, most, bound)
		}
		if min := int(float64(l.PerSecond) * 30 * 0.7); len(admitted) < min {
			t.Errorf("%+v: %d calls in 30 s, want at least %d (70%% of the rate)", l, len(admitted), min)
		}
		t.Logf("%+v: most in any second %d (bound %d), %d in 30 s", l, most, l.PerSecond+l.Burst, len(admitted))
	}
}

func TestUnavailableWhenNoShareCanBeClaimed(t *testing.T) {
	lim := ratelimit.New(failing{}, clock.Real{}, ratelimit.Config{}, nil)
	err := lim.Allow(context.Background(), "k", billing.KeyLimits{PerSecond: 1, Burst: 1}, time.Now())
	if billing.ErrorCode(err) != billing.CodeUnavailable {
		t.Errorf("Allow = %v, want unavailable", err)
	}
}

type failing struct{}

func (failing) ClaimRate(context.Context, string, func(*billing.RatePool)) error {
	return context.DeadlineExceeded
}
