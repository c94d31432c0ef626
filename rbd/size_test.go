package rbd

import (
	"errors"
	"math"
	"testing"
)

func TestParseSize(t *testing.T) {
	const G = int64(1) << 30
	valid := []struct {
		in   string
		want int64
	}{
		{"10G", 10 * G},
		{"10g", 10 * G},
		{"1M", 1 << 20},
		{"512m", 512 << 20},
		{"2T", 2 << 40},
		{"2t", 2 << 40},
		{"0G", 0}, // upstream accepts it; librbd decides
		{"007G", 7 * G},
		{"8388607T", 8388607 << 40}, // the largest T that fits in int64
	}
	for _, tc := range valid {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	invalid := []string{
		"", "G", "10", "10K", "10B", "10GB", "1.5G", "-1G", "+1G", " 10G", "10G ",
		"1_0G", "10 G", "0x10G", "８G", "8388608T", "99999999999999999999M",
	}
	for _, in := range invalid {
		got, err := ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
			continue
		}
		if err.Error() != "Size is invalid" {
			t.Errorf("ParseSize(%q) error %q, want upstream's %q", in, err, "Size is invalid")
		}
		if !errors.Is(err, ErrInvalidSize) {
			t.Errorf("ParseSize(%q) error does not match ErrInvalidSize", in)
		}
	}
}

// Expected values are upstream's human_size output, computed with Python.
func TestHumanSize(t *testing.T) {
	cases := []struct {
		in   int64
		want string
	}{
		{0, "0.00Y"},
		{1, "1b"},
		{1023, "1023b"},
		{1024, "1K"},
		{1536, "1536b"},
		{5 << 20, "5M"},
		{10 << 30, "10G"},
		{1536 << 30, "1536G"},
		{3<<40 + 1<<30, "3073G"},
		{1 << 40, "1.0T"},
		{1 << 50, "1.0P"},
		{1 << 60, "1.00E"},
		{1 << 62, "4.00E"},
		{math.MaxInt64, "9223372036854775808b"},
		{1<<53 + 1, "9007199254740992b"},
		{-1024, "-1K"},
	}
	for _, tc := range cases {
		if got := HumanSize(tc.in); got != tc.want {
			t.Errorf("HumanSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestResizeErrorMessage(t *testing.T) {
	err := error(&ResizeError{Current: 10 << 30, Requested: 5 << 30})
	want := "resize value must be larger than the current size (10G/10737418240)"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if !errors.Is(err, ErrResizeNotLarger) {
		t.Error("ResizeError does not match ErrResizeNotLarger")
	}
}

func TestValidateNames(t *testing.T) {
	for _, ok := range []string{"rbd", "my-pool_1.x", "A"} {
		if err := ValidatePoolName(ok); err != nil {
			t.Errorf("ValidatePoolName(%q): %v", ok, err)
		}
		if err := ValidateImageName(ok); err != nil {
			t.Errorf("ValidateImageName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", "a@b", "é", "a:b"} {
		err := ValidatePoolName(bad)
		if err == nil || err.Error() != "Invalid pool name (use alphanumeric, '_', '.', or '-' characters)" {
			t.Errorf("ValidatePoolName(%q) = %v", bad, err)
		}
		err = ValidateImageName(bad)
		if err == nil || err.Error() != "Invalid image name (use alphanumeric, '_', '.', or '-' characters)" {
			t.Errorf("ValidateImageName(%q) = %v", bad, err)
		}
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateImageName(%q) does not match ErrInvalidName", bad)
		}
	}
	for _, ok := range []string{"snap1", "before upgrade", "a:b", "é"} {
		if err := ValidateSnapshotName(ok); err != nil {
			t.Errorf("ValidateSnapshotName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a@b", "@", "/", "a\x00b", "a\x01", "a\nb", "a\x7f", "a\xffb"} {
		err := ValidateSnapshotName(bad)
		if err == nil || err.Error() != "snapshot name is invalid" {
			t.Errorf("ValidateSnapshotName(%q) = %v", bad, err)
		}
	}
}

func TestCheckFailoverSafe(t *testing.T) {
	cases := []struct {
		backstore string
		gateways  int
		ok        bool
	}{
		{BackstoreUserRBD, 1, true},
		{BackstoreUserRBD, 4, true},
		{BackstoreBlock, 0, true},
		{BackstoreBlock, 1, true},
		{BackstoreBlock, 2, false},
		{BackstoreBlock, 8, false},
	}
	for _, tc := range cases {
		err := CheckFailoverSafe(tc.backstore, tc.gateways)
		if (err == nil) != tc.ok {
			t.Errorf("CheckFailoverSafe(%q, %d) = %v, want ok=%v", tc.backstore, tc.gateways, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrFailoverUnsafe) {
			t.Errorf("CheckFailoverSafe error %v does not match ErrFailoverUnsafe", err)
		}
	}
}

func TestCheckFeatures(t *testing.T) {
	if err := CheckFeatures("img", DefaultFeatures); err != nil {
		t.Errorf("default features refused: %v", err)
	}
	if DefaultFeatures != 61 {
		t.Errorf("DefaultFeatures = %d, upstream creates images with 61", DefaultFeatures)
	}
	err := CheckFeatures("img", 1) // layering only
	want := "(LUN.allocate) rbd 'img' is not compatible with LIO\nImage features  are not supported"
	if err == nil || err.Error() != want || !errors.Is(err, ErrFeatures) {
		t.Errorf("CheckFeatures(layering) = %v, want %q", err, want)
	}
}
