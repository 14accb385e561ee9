// Package configs holds the configuration egressd runs with when no
// -config flag is given, and the annotated reference of every key.
package configs

import _ "embed"

// Default is served by a bare `egressd`: 127.0.0.1:5353, the example
// policy, and a firewall that falls back to log-only without CAP_NET_ADMIN.
//
//go:embed default.toml
var Default []byte

// DefaultName is how error messages name the embedded default.
const DefaultName = "configs/default.toml (embedded)"
