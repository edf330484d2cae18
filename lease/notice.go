package lease

import (
	"time"

	"github.com/paymeter/paymeter/billing"
)

// crossing returns the low-balance notice of the calls about to be
// recorded on h, if they took the balance this instance sees (balance
// beside the lease when it was taken, plus what the lease has left) below
// the account's threshold: the crossing is seen where the use is recorded,
// and the notice is written in the same commit. h's account lock is held.
func (h *held) crossing(balance int64, now time.Time) *billing.Notice {
	left := balance + h.lease.Amount
	n, ok := h.lease.Watch.Crossed(left-h.recorded.Used, left-h.used, now)
	if !ok {
		return nil
	}
	return &n
}
