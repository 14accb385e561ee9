package main

import (
	"runtime"
	"testing"
)

func TestMemoryProfilesOnlyWithProfiles(t *testing.T) {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	for _, tc := range []struct {
		profiles bool
		want     int
	}{{false, 0}, {true, memProfileRate}, {false, 0}} {
		applyProfiles(tc.profiles)
		if runtime.MemProfileRate != tc.want {
			t.Errorf("profiles %t: MemProfileRate %d, want %d", tc.profiles, runtime.MemProfileRate, tc.want)
		}
	}
}
