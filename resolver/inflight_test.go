package resolver

import (
	"testing"
	"time"
)

func TestInFlightBound(t *testing.T) {
	var f inFlight
	for i := range maxInFlight {
		if !f.acquire() {
			t.Fatalf("query %d refused below the bound", i)
		}
	}
	for range 2 {
		if f.acquire() {
			t.Fatal("query admitted above the bound")
		}
	}
	f.release()
	if !f.acquire() {
		t.Fatal("query refused after a release")
	}

	now := time.Unix(1000, 0)
	if n, ok := f.warnDue(now); !ok || n != 2 {
		t.Errorf("first warning: %d dropped, due %v; want 2, true", n, ok)
	}
	if _, ok := f.warnDue(now.Add(time.Second)); ok {
		t.Error("warned again within the interval")
	}
	f.acquire()
	if n, ok := f.warnDue(now.Add(dropWarnInterval)); !ok || n != 1 {
		t.Errorf("next warning: %d dropped, due %v; want 1, true", n, ok)
	}
}
