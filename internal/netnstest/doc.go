// Package netnstest creates, uses and removes the network namespaces that
// egressd's root-only tests (firewall, resolver benchmarks, end-to-end)
// and soak build their topologies from. It runs `ip` and `nft` with a
// bounded time each, can run Go code with its sockets inside a namespace
// (Do, on a locked thread), and hands out a namespace's file descriptor
// for netlink sockets opened into it. Require skips a test that cannot
// build namespaces here, or fails it when EGRESSD_REQUIRE_NETNS=1.
package netnstest
