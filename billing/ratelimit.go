package billing

import (
	"fmt"
	"math"
	"slices"
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

// Refill brings b to now and then sets its rate and burst, clipping its
// tokens to the new burst and adding add (up to it): a share of a key's
// rate that grew or shrank.
func (b *Bucket) Refill(now time.Time, rate, burst, add float64) {
	if !b.started {
		b.at, b.started = now, true
	} else if now.After(b.at) {
		b.tokens = math.Min(b.Burst, b.tokens+now.Sub(b.at).Seconds()*b.Rate)
		b.at = now
	}
	b.Rate, b.Burst = rate, burst
	b.tokens = math.Min(burst, b.tokens+add)
}

// RatePool is how a key's rate is shared by the instances that serve it,
// as stored: each holder may admit Units of the key's burst, at the same
// fraction of its perSecond, until Until. The units held never add up to
// more than the burst, and units change hands empty (they refill at their
// rate from FreeSince, when they were last let go), so that all instances
// together admit at most burst + perSecond × t calls in any t seconds.
type RatePool struct {
	Holders   map[string]RateHolder `firestore:"holders"`
	FreeSince time.Time             `firestore:"freeSince"`
}

// RateHolder is one instance's share of a key's rate.
type RateHolder struct {
	Units int64     `firestore:"units"`
	Until time.Time `firestore:"until"`
}

// Claim renews me's share of the key's rate l at now for ttl: an equal
// share of the burst among the live holders (the remainder to the first by
// name), but never more than the others leave free, so a holder above its
// share keeps it until its own next claim gives the surplus back. It
// returns me's units and the tokens its new units bring (their refill
// since FreeSince).
func (p *RatePool) Claim(me string, l KeyLimits, now time.Time, ttl time.Duration) (units int64, fresh float64) {
	if p.Holders == nil {
		p.Holders = map[string]RateHolder{}
	}
	for id, h := range p.Holders {
		if !now.Before(h.Until) {
			if h.Units > 0 && h.Until.After(p.FreeSince) {
				p.FreeSince = h.Until
			}
			delete(p.Holders, id)
		}
	}
	prev := p.Holders[me].Units
	names := []string{me}
	var others int64
	for id, h := range p.Holders {
		if id != me {
			names = append(names, id)
			others += h.Units
		}
	}
	slices.Sort(names)
	n := int64(len(names))
	target := l.Burst / n
	if int64(slices.Index(names, me)) < l.Burst%n {
		target++
	}
	units = max(0, min(target, l.Burst-others))
	if units < prev {
		p.FreeSince = now // let go with no tokens, as far as anyone knows
	}
	if gained := units - prev; gained > 0 && l.Burst > 0 {
		perUnit := math.Min(1, now.Sub(p.FreeSince).Seconds()*float64(l.PerSecond)/float64(l.Burst))
		fresh = float64(gained) * math.Max(0, perUnit)
	}
	p.Holders[me] = RateHolder{Units: units, Until: now.Add(ttl)}
	return units, fresh
}
