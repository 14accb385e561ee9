// Package deps pins the module's dependencies while packages are written.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/google/nftables"
	_ "github.com/google/nftables/binaryutil"
	_ "github.com/google/nftables/expr"
	_ "github.com/hashicorp/golang-lru/v2"
	_ "github.com/mdlayher/netlink"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/prometheus/client_golang/prometheus/testutil/promlint"
	_ "golang.org/x/net/http2"
	_ "golang.org/x/net/idna"
	_ "golang.org/x/net/publicsuffix"
	_ "golang.org/x/sync/singleflight"
	_ "golang.org/x/sys/unix"
)
