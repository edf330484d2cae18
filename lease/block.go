package lease

import "time"

// blockSizer sizes an account's leases, between min and max credits: the
// block doubles while the recent rate would spend it within the horizon
// (a fast key reaches its size in one step) and halves when a block comes
// back mostly unused. The horizon is how long an instance keeps a lease it
// does not use (Config.Idle): journal writes renew leases, so a block may
// last that long, and the fewer blocks, the fewer lease transactions.
type blockSizer struct {
	min, max int64
	horizon  time.Duration
}

// next returns the block that follows block once a lease of amount credits
// is retired with used of them spent over lasted, from its taking to its
// last call. A lease smaller than the block (the balance capped it) does
// not grow the block, however fast it was spent.
func (z blockSizer) next(block, amount, used int64, lasted time.Duration) int64 {
	switch {
	case used*2 >= amount && amount >= block:
		rate := float64(used) / max(lasted, time.Millisecond).Seconds()
		for block < z.max && rate*z.horizon.Seconds() > float64(block) {
			block = min(block*2, z.max)
		}
	case used*2 < amount:
		block = max(block/2, z.min)
	}
	return block
}

// want returns the credits to lease for a call costing cost: the block, or
// cost if that is larger; once the balance beside the leases has been
// seen, no more than half of it (but cost at least), so that no other
// instance answers 402 while this one holds most of the credits. a.mu is
// held.
func (a *account) want(cost int64) int64 {
	want := max(a.block, cost)
	if a.seen {
		want = min(want, max(cost, a.balance/2))
	}
	return want
}
