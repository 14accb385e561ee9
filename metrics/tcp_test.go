package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeTCP struct {
	clients, outsiders                 int
	rejectedClients, rejectedOutsiders uint64
}

func (f fakeTCP) TCPConnections() (int, int)    { return f.clients, f.outsiders }
func (f fakeTCP) TCPRejected() (uint64, uint64) { return f.rejectedClients, f.rejectedOutsiders }

func TestWatchTCP(t *testing.T) {
	m := New()
	var current TCPCounters
	if err := m.WatchTCP(func() TCPCounters { return current }); err != nil {
		t.Fatal(err)
	}
	exposition := func(clients, outsiders, rejClients, rejOutsiders int) string {
		return fmt.Sprintf(`# HELP egressd_tcp_connections Open DNS-over-TCP connections, by pool: clients (inside server.clients) and outsiders (everyone else, answered REFUSED).
# TYPE egressd_tcp_connections gauge
egressd_tcp_connections{pool="clients"} %d
egressd_tcp_connections{pool="outsiders"} %d
# HELP egressd_tcp_rejected_total DNS-over-TCP connections closed at once because their pool, client address or outside prefix was at its limit.
# TYPE egressd_tcp_rejected_total counter
egressd_tcp_rejected_total{pool="clients"} %d
egressd_tcp_rejected_total{pool="outsiders"} %d
`, clients, outsiders, rejClients, rejOutsiders)
	}
	tests := []struct {
		name    string
		current TCPCounters
		want    string
	}{
		{"no server yet", nil, exposition(0, 0, 0, 0)},
		{"server", fakeTCP{clients: 3, outsiders: 64, rejectedClients: 2, rejectedOutsiders: 1136}, exposition(3, 64, 2, 1136)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			current = tc.current
			if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(tc.want), "egressd_tcp_connections", "egressd_tcp_rejected_total"); err != nil {
				t.Error(err)
			}
		})
	}
}
