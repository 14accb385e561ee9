package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandlerEndpoints(t *testing.T) {
	m := New()
	m.Queries.WithLabelValues("servers", "deny", "A").Add(3)
	var problems []string
	srv := httptest.NewServer(m.Handler(func() []string { return problems }))
	defer srv.Close()

	tests := []struct {
		name     string
		problems []string
		path     string
		method   string
		wantCode int
		wantBody []string
	}{
		{"healthz", nil, "/healthz", "GET", 200, []string{"ok"}},
		{"healthz ignores readiness", []string{"x"}, "/healthz", "GET", 200, []string{"ok"}},
		{"ready", nil, "/readyz", "GET", 200, []string{"ok"}},
		{"not ready lists problems", []string{"firewall table not installed", "no upstream reachable"}, "/readyz", "GET", 503,
			[]string{"firewall table not installed\nno upstream reachable\n"}},
		{"metrics", nil, "/metrics", "GET", 200,
			[]string{`egressd_queries_total{decision="deny",group="servers",qtype="A"} 3`, "go_goroutines"}},
		{"unknown path", nil, "/nope", "GET", 404, nil},
		{"wrong method", nil, "/healthz", "POST", 405, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			problems = tc.problems
			body := fetch(t, tc.method, srv.URL+tc.path, tc.wantCode)
			for _, want := range tc.wantBody {
				if !strings.Contains(string(body), want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
		})
	}
}

func TestHandlerNilReady(t *testing.T) {
	rec := httptest.NewRecorder()
	New().Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Errorf("nil ReadyFunc gave %d, want 200", rec.Code)
	}
}

func TestServeBindsAndStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Serve(ctx, "127.0.0.1:0", New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Addr().String() + "/healthz"
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz status %d", resp.StatusCode)
	}

	if _, err := Serve(ctx, s.Addr().String(), New(), nil); err == nil {
		t.Error("second Serve on a bound address succeeded")
	}

	cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("server still running after context cancel")
	}
	if _, err := client.Get(url); err == nil {
		t.Error("request succeeded after shutdown")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after shutdown: %v", err)
	}
}

func TestServeDisabled(t *testing.T) {
	s, err := Serve(context.Background(), "", New(), nil)
	if err != nil || s != nil {
		t.Fatalf("Serve(\"\") = %v, %v; want nil, nil", s, err)
	}
	if s.Addr() != nil || s.Close() != nil {
		t.Error("nil Server methods misbehave")
	}
}

// TestProfiles: /debug/pprof/ is served only with Profiles.
func TestProfiles(t *testing.T) {
	tests := []struct {
		name     string
		profiles bool
		path     string
		wantCode int
		wantBody string
	}{
		{"off", false, "/debug/pprof/heap?debug=1", 404, ""},
		{"off, index", false, "/debug/pprof/", 404, ""},
		{"heap", true, "/debug/pprof/heap?debug=1", 200, "heap profile"},
		{"goroutines", true, "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"index", true, "/debug/pprof/", 200, "allocs"},
		{"cpu", true, "/debug/pprof/profile?seconds=1", 200, ""},
		{"trace", true, "/debug/pprof/trace?seconds=1", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			m.Profiles = tc.profiles
			s, err := Serve(context.Background(), "127.0.0.1:0", m, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			body := fetch(t, "GET", "http://"+s.Addr().String()+tc.path, tc.wantCode)
			if tc.wantCode == 200 && len(body) == 0 {
				t.Error("empty body")
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body lacks %q: %.300q", tc.wantBody, body)
			}
		})
	}
}

// fetch sends a request without a body and returns the response's body,
// failing the test unless the status is want.
func fetch(t *testing.T, method, url string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %.200q", method, url, resp.StatusCode, want, body)
	}
	return body
}
