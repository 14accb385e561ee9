// Package listserver is an HTTP server of a category list for tests that
// can be told to stall: every request after Stall waits until the test
// ends, as a list server that stopped answering would make egressd wait.
package listserver

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Server serves the same list on every path.
type Server struct {
	URL string

	stall   atomic.Bool
	stalled atomic.Int32
	arrived chan struct{}
}

// Start serves body until the test ends.
func Start(t testing.TB, body string) *Server {
	t.Helper()
	s := &Server{arrived: make(chan struct{}, 1)}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if s.stall.Load() {
			s.stalled.Add(1)
			select {
			case s.arrived <- struct{}{}:
			default:
			}
			<-release
		}
		_, _ = w.Write([]byte(body))
	}))
	s.URL = srv.URL
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: Close waits for handlers
	return s
}

// Stall makes every later request wait until the test ends.
func (s *Server) Stall() { s.stall.Store(true) }

// Stalled counts the requests held since Stall.
func (s *Server) Stalled() int { return int(s.stalled.Load()) }

// Arrived receives when a request is held (at least once after any number
// of them since the last receive).
func (s *Server) Arrived() <-chan struct{} { return s.arrived }
