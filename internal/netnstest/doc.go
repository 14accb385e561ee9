// Package netnstest creates, uses and removes the network namespaces that
// egressd's end-to-end tests and soak build their topologies from. It runs
// `ip` and `nft` with a bounded time each and can run Go code with its
// sockets inside a namespace.
package netnstest
