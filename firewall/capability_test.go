package firewall

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestCanAdminNetwork checks both outcomes: root passes, anyone else gets
// the explanatory error (run the test binary unprivileged to see it).
func TestCanAdminNetwork(t *testing.T) {
	err := CanAdminNetwork()
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatalf("root: %v", err)
		}
		return
	}
	if !errors.Is(err, ErrNoNetAdmin) {
		t.Fatalf("unprivileged: err = %v, want ErrNoNetAdmin", err)
	}
	if !strings.Contains(err.Error(), `backend = "none"`) {
		t.Errorf("error does not say how to fix it: %v", err)
	}
}

func TestWrapPermission(t *testing.T) {
	if err := wrapPermission(os.ErrPermission); !errors.Is(err, ErrNoNetAdmin) {
		t.Errorf("EPERM not explained: %v", err)
	}
	other := errors.New("boom")
	if err := wrapPermission(other); err != other {
		t.Errorf("unrelated error rewritten: %v", err)
	}
}

func TestNoneWarnsAndAllowsEverything(t *testing.T) {
	var logs bytes.Buffer
	n := NewNone(slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "not enforced") {
		t.Errorf("no warning logged: %q", logs.String())
	}
	if err := n.Allow(context.Background(), Allowance{Group: "any", IPs: addrs("192.0.2.1")}); err != nil {
		t.Errorf("Allow: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if c := strings.Count(logs.String(), "\n"); c != 1 {
		t.Errorf("logged %d lines, want exactly one", c)
	}
}
