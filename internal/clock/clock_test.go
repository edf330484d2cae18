package clock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/internal/clock"
)

var t0 = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

func TestReal(t *testing.T) {
	if d := time.Since(clock.Real{}.Now()); d < 0 || d > time.Second {
		t.Fatalf("Real is %s off the wall clock", d)
	}
}

func TestDev(t *testing.T) {
	c := clock.NewDevAt(t0)
	if d := c.Now().Sub(t0); d < 0 || d > time.Second {
		t.Fatalf("Now %s, want %s", c.Now(), t0)
	}
	c.Advance(time.Hour)
	c.Advance(-2 * time.Hour)
	c.AdvanceTo(t0)
	if d := c.Now().Sub(t0.Add(time.Hour)); d < 0 || d > time.Second {
		t.Fatalf("Now %s, want an hour on: the clock never goes back", c.Now())
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if d := c.Now().Sub(t0.Add(time.Hour + 800*time.Second)); d < 0 || d > time.Second {
		t.Fatalf("Now %s after concurrent advances", c.Now())
	}
}

func TestFixed(t *testing.T) {
	c := clock.NewFixed(t0)
	time.Sleep(time.Millisecond)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now %s, want %s: a fixed clock does not run", c.Now(), t0)
	}
	c.Add(-time.Hour)
	if want := t0.Add(-time.Hour); !c.Now().Equal(want) {
		t.Fatalf("after Add(-1h): %s, want %s", c.Now(), want)
	}
	c.Set(t0.Add(24 * time.Hour))
	if want := t0.Add(24 * time.Hour); !c.Now().Equal(want) {
		t.Fatalf("after Set: %s, want %s", c.Now(), want)
	}
}
