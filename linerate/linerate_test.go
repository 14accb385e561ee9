package linerate

import (
	"fmt"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/fakeclock"
)

// A key writes a second's worth of lines at once, then rate a second; the
// first line after some were left out carries their count; keys do not
// share budgets.
func TestAllow(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := New(2, 16, clock.Now)
	steps := []struct {
		name    string
		advance time.Duration
		key     string
		ok      bool
		leftOut uint64
	}{
		{"burst 1", 0, "a", true, 0},
		{"burst 2", 0, "a", true, 0},
		{"over", 0, "a", false, 0},
		{"over again", 0, "a", false, 0},
		{"another key has its own budget", 0, "b", true, 0},
		{"half a second refills one: the count comes with it", 500 * time.Millisecond, "a", true, 2},
		{"and is not handed out twice", 500 * time.Millisecond, "a", true, 0},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		ok, left := r.Allow(st.key)
		if ok != st.ok || left != st.leftOut {
			t.Errorf("%s: Allow(%s) = %t, %d; want %t, %d", st.name, st.key, ok, left, st.ok, st.leftOut)
		}
	}
}

// A fractional rate still allows one line at once.
func TestBurstAtLeastOne(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := New(0.1, 1, clock.Now)
	if ok, _ := r.Allow("a"); !ok {
		t.Fatal("first line of rate 0.1 refused")
	}
	if ok, _ := r.Allow("a"); ok {
		t.Fatal("second line of rate 0.1 allowed at once")
	}
	clock.Advance(10 * time.Second)
	if ok, left := r.Allow("a"); !ok || left != 1 {
		t.Fatalf("after 10 s: %t, %d; want true, 1", ok, left)
	}
}

// The keys tracked stay bounded however many keys there are.
func TestKeysBounded(t *testing.T) {
	const maxKeys = 4096
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := New(1, maxKeys, clock.Now)
	for i := range 3 * maxKeys {
		key := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		r.Allow(key)
		r.Allow(key) // left out: kept while pending
		if n := r.Len(); n > maxKeys {
			t.Fatalf("%d keys tracked, bound %d", n, maxKeys)
		}
	}
}
