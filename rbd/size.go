package rbd

import (
	"math"
	"strconv"
)

// msgSizeInvalid is upstream's answer to any malformed size, for create and resize.
const msgSizeInvalid = "Size is invalid"

// ParseSize converts an API/gwcli size such as "10G" to bytes: an unsigned decimal
// integer immediately followed by M, G or T (either case), binary multiples. Any
// other input (empty, no unit, decimals, signs, spaces, an overflowing value) gives
// an error reading upstream's "Size is invalid" that matches ErrInvalidSize.
//
// Upstream delegates the number to Python's int(), which also takes signs, spaces and
// underscores; none of those can describe a real disk, so they are refused here.
func ParseSize(s string) (int64, error) {
	invalid := &upstreamError{msg: msgSizeInvalid, sentinel: ErrInvalidSize}
	if len(s) < 2 {
		return 0, invalid
	}
	var shift uint
	switch s[len(s)-1] {
	case 'M', 'm':
		shift = 20
	case 'G', 'g':
		shift = 30
	case 'T', 't':
		shift = 40
	default:
		return 0, invalid
	}
	digits := s[:len(s)-1]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, invalid
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64>>shift {
		return 0, invalid
	}
	return n << shift, nil
}

// HumanSize renders bytes the way upstream's human_size does, which the API puts in
// messages (the resize error) and gwcli shows: divide by 1024 while the value is
// exactly divisible, then print with unit b/K/M/G (no decimals), T/P (one decimal)
// or E/Z (two). Kept quirk: 0 is divisible at every step and prints as "0.00Y".
func HumanSize(n int64) string {
	units := []struct {
		unit string
		prec int
	}{{"b", 0}, {"K", 0}, {"M", 0}, {"G", 0}, {"T", 1}, {"P", 1}, {"E", 2}, {"Z", 2}}
	// Upstream tests divisibility on the integer first and on a float after (Python's
	// /= 1024.0), and its "%f" formats even the integer as a float, so a byte count
	// beyond 2^53 prints rounded; mirroring both keeps the output identical.
	if n%1024 != 0 {
		return strconv.FormatFloat(float64(n), 'f', 0, 64) + "b"
	}
	v := float64(n) / 1024
	for _, u := range units[1:] {
		if math.Mod(v, 1024) != 0 {
			return strconv.FormatFloat(v, 'f', u.prec, 64) + u.unit
		}
		v /= 1024
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "Y"
}
