package codegen

import "testing"

func TestKernelSeries(t *testing.T) {
	for _, tc := range []struct{ release, want string }{
		{"6.18.44", "6.18"},
		{"6.18.0-rc3", "6.18"},
		{"6.18", "6.18"},
		{"6.18-custom", "6.18"},
		{"6.180.1", "6.180"},
		{"7.0.1+", "7.0"},
		{"5.15.0-91-generic", "5.15"},
	} {
		if got := kernelSeries(tc.release); got != tc.want {
			t.Errorf("kernelSeries(%q) = %q, want %q", tc.release, got, tc.want)
		}
	}
}
