package api

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLoginSources bounds the memory of the failed-login back-off: past it,
// sources whose allowance has fully come back are forgotten, and when none
// has, a new source is not tracked (it gets the full allowance, as good
// clients from any source must).
const maxLoginSources = 4096

// loginLimiter is the per-source back-off on failed basic-auth logins
// (api_failed_login_limit): a source may fail limit times in a row, then
// regains one attempt every minute/limit; while it has none left, every
// request it sends is answered 429 before its credentials are checked, so
// guessing cannot go on at full speed and a right guess is not revealed
// early. Successful logins cost nothing, so good clients are never slowed.
type loginLimiter struct {
	limit int
	every rate.Limit
	now   func() time.Time

	mu      sync.Mutex
	sources map[string]*rate.Limiter
}

func newLoginLimiter(limit int, now func() time.Time) *loginLimiter {
	if limit <= 0 {
		return nil
	}
	return &loginLimiter{
		limit:   limit,
		every:   rate.Every(time.Minute / time.Duration(limit)),
		now:     now,
		sources: map[string]*rate.Limiter{},
	}
}

// sourceKey is the address a limit applies to: IPv6 sources by /64, the
// block one host usually gets, so hopping addresses buys no attempts.
func sourceKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Is4() {
		return addr
	}
	p, err := a.Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// blocked reports whether src has no attempt left and how long until it
// has one again.
func (l *loginLimiter) blocked(src string) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.sources[sourceKey(src)]
	if lim == nil {
		return 0, false
	}
	now := l.now()
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration(math.Ceil((1 - tokens) / float64(l.every) * float64(time.Second))), true
}

// failed charges one failed login to src and reports whether that used up
// its allowance.
func (l *loginLimiter) failed(src string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key, now := sourceKey(src), l.now()
	lim := l.sources[key]
	if lim == nil {
		if len(l.sources) >= maxLoginSources {
			l.forgetRecovered(now)
		}
		if len(l.sources) >= maxLoginSources {
			return false
		}
		lim = rate.NewLimiter(l.every, l.limit)
		l.sources[key] = lim
	}
	lim.AllowN(now, 1)
	return lim.TokensAt(now) < 1
}

// forgetRecovered drops the sources whose allowance is whole again: their
// limiter holds nothing a new one would not.
func (l *loginLimiter) forgetRecovered(now time.Time) {
	for k, lim := range l.sources {
		if lim.TokensAt(now) >= float64(l.limit) {
			delete(l.sources, k)
		}
	}
}
