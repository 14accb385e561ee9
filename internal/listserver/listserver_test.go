package listserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
)

func TestStall(t *testing.T) {
	s := Start(t, "ads.example\n")
	resp, err := http.Get(s.URL + "/ads.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ads.example\n" || s.Stalled() != 0 {
		t.Fatalf("before Stall: body %q, %d stalled", body, s.Stalled())
	}

	s.Stall()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/ads.txt", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-s.Arrived():
	case err := <-done:
		t.Fatalf("request after Stall returned: %v", err)
	}
	if s.Stalled() != 1 {
		t.Errorf("%d stalled, want 1", s.Stalled())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("stalled request ended with %v, want it to wait until cancelled", err)
	}
}
