// Package clock holds the three clocks that implement billing.Clock: Real,
// what the deployed functions read; Dev, real time that the dev server moves
// forward on request; and Fixed, which tests set and move by hand. All are
// safe for concurrent use.
package clock

import (
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
)

var (
	_ billing.Clock = Real{}
	_ billing.Clock = (*Dev)(nil)
	_ billing.Clock = (*Fixed)(nil)
)

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Dev is the dev server's clock: real time plus an offset that only moves
// forward, so a week of grants can pass in a request.
type Dev struct {
	mu     sync.Mutex
	offset time.Duration
	now    func() time.Time
}

// NewDev returns a clock that reads real time until it is moved.
func NewDev() *Dev { return &Dev{now: time.Now} }

// NewDevAt returns a clock that reads start now and then runs at the speed
// of real time, for tests that want a fixed origin.
func NewDevAt(start time.Time) *Dev {
	c := NewDev()
	c.offset = start.Sub(c.now())
	return c
}

// Now returns real time plus the offset.
func (c *Dev) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now().Add(c.offset)
}

// Advance moves the clock forward by d; a negative d does nothing.
func (c *Dev) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// AdvanceTo moves the clock forward to t; a time not after Now does nothing.
func (c *Dev) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := t.Sub(c.now().Add(c.offset)); d > 0 {
		c.offset += d
	}
}

// Fixed is a clock for tests: it reads what it was set to, and moves only
// when told, in either direction.
type Fixed struct {
	mu sync.Mutex
	t  time.Time
}

// NewFixed returns a clock that reads t.
func NewFixed(t time.Time) *Fixed { return &Fixed{t: t} }

// Now returns the clock's time.
func (c *Fixed) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Fixed) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set sets the clock to t.
func (c *Fixed) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
