package billing

import (
	"fmt"
	"math"
	"time"
)

// RateLimitedError refuses a call past its key's perSecond and burst.
// RetryAfter is how long until a call would be let through. Its code is
// CodeRateLimited.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return e.Unwrap().Error() }

// Unwrap is the contract's error: rate_limited, with the wait in words.
func (e *RateLimitedError) Unwrap() error {
	return &Error{Code: CodeRateLimited, Message: fmt.Sprintf("this API key's rate limit is reached; retry in %d s", e.RetryAfterSeconds())}
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least 1:
// the Retry-After header.
func (e *RateLimitedError) RetryAfterSeconds() int64 {
	return max(1, int64(math.Ceil(e.RetryAfter.Seconds())))
}

// Bucket is a token bucket: it fills at Rate tokens a second up to Burst,
// and starts full. The zero Bucket with Rate and Burst set is ready.
type Bucket struct {
	Rate, Burst float64
	tokens      float64
	at          time.Time
	started     bool
}

// Take takes one token at now. It returns 0 if it took one, else how long
// until one is there (nothing is taken then). A clock that goes back adds
// nothing.
func (b *Bucket) Take(now time.Time) time.Duration {
	if !b.started {
		b.tokens, b.at, b.started = b.Burst, now, true
	}
	if now.After(b.at) {
		b.tokens = math.Min(b.Burst, b.tokens+now.Sub(b.at).Seconds()*b.Rate)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	if b.Rate <= 0 {
		return time.Second
	}
	return time.Duration((1 - b.tokens) / b.Rate * float64(time.Second))
}
