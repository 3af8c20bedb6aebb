package ir

import (
	"fmt"
	"math/bits"
)

// LimitDefaultBurst is the burst of a packet limit that names none
// (the kernel's NFT_LIMIT_PKT_BURST_DEFAULT).
const LimitDefaultBurst = 5

// LimitParams are the token bucket constants nft_limit_init derives from
// a limit; tokens are nanoseconds.
type LimitParams struct {
	// Nsecs is the limit's unit in nanoseconds.
	Nsecs uint64
	// TokensMax is the bucket size, and its content when it is created.
	TokensMax uint64
	// Cost is what one packet takes out of the bucket (packet limits
	// only; a byte limit's cost is Nsecs*len/Rate).
	Cost uint64
}

// Params computes the bucket constants with the kernel's arithmetic and
// its overflow checks (which make it refuse the limit with EOVERFLOW).
func (l *Limit) Params() (LimitParams, error) {
	var p LimitParams
	if l.Rate == 0 {
		return p, fmt.Errorf("limit rate 0")
	}
	hi, lo := bits.Mul64(l.Unit, 1e9)
	if hi != 0 {
		return p, fmt.Errorf("limit unit %d seconds overflows", l.Unit)
	}
	p.Nsecs = lo
	burst := uint64(l.Burst)
	if !l.Bytes && burst == 0 {
		burst = LimitDefaultBurst
	}
	if _, c := bits.Add64(l.Rate, burst, 0); c != 0 {
		return p, fmt.Errorf("limit rate plus burst overflows")
	}
	if !l.Bytes {
		per := p.Nsecs / l.Rate
		hi, lo := bits.Mul64(per, burst)
		if hi != 0 {
			return p, fmt.Errorf("limit bucket size overflows")
		}
		p.TokensMax = lo
		p.Cost = per
		return p, nil
	}
	hi, lo = bits.Mul64(p.Nsecs, l.Rate+burst)
	if hi != 0 {
		return p, fmt.Errorf("limit bucket size overflows")
	}
	p.TokensMax = lo / l.Rate
	return p, nil
}

// Take runs one packet of length n through a bucket holding tokens, last
// updated at last, at time now (nanoseconds), as nft_limit_eval does. It
// returns the bucket's new state and whether the rule goes on (true) or
// ends (NFT_BREAK).
func (l *Limit) Take(p LimitParams, tokens, last, now uint64, n uint32) (newTokens, newLast uint64, goOn bool) {
	cost := p.Cost
	if l.Bytes {
		cost = p.Nsecs * uint64(n) / l.Rate
	}
	t := tokens + now - last
	if t > p.TokensMax {
		t = p.TokensMax
	}
	if delta := int64(t - cost); delta >= 0 {
		return uint64(delta), now, !l.Over
	}
	return t, now, l.Over
}
