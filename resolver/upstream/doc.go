// Package upstream is how egressd reaches the servers it forwards to: the
// transports, the choice of server and the failover between servers.
//
// A Set is built once from Options (New) and answers Exchange for the
// resolver. For each query it picks the server list (the longest
// configured Zone the name is in, else the default Servers), tries the
// servers in order with those that recently failed to answer moved last
// (health.go), gives each attempt Options.Timeout, and returns the first
// reply that is neither an error nor SERVFAIL or REFUSED, naming the
// server that gave it. Every attempt is counted in
// egressd_upstream_requests_total and egressd_upstream_duration_seconds.
//
// Transports, one client per distinct configured address (build.go),
// shared by the default list and the zones:
//   - plain DNS (plain.go): UDP from a pool of connected sockets whose
//     source ports rotate (udppool.go), read and written with raw
//     non-blocking system calls (rawudp_linux.go), TCP when the reply is
//     truncated; ExchangeWire hands a plain reply (plainwire.go) over
//     unparsed;
//   - DNS over TLS (tls.go, tls_conn.go): a few pipelined connections;
//   - DNS over HTTPS (https.go): POST over a shared HTTP/2 transport.
//
// Encrypted servers given by host name are resolved through the plain
// bootstrap servers (bootstrap.go), never the system resolver. Sockets
// carry Options.Mark (SO_MARK, mark_linux.go) so the firewall lets
// egressd's own queries out. ParseAddr (addr.go) is the one grammar of
// upstream addresses, used by config validation too.
//
// Every client checks that a reply answers the query (ID, name, type,
// class) and returns by the context's deadline; messages are never
// modified in place.
package upstream
