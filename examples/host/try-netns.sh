#!/usr/bin/env bash
# Runs examples/host/egressd.toml for real, inside two network namespaces
# this script creates (and removes): "host" runs egressd on the output hook,
# "net" plays the internet with a second egressd answering fixed names and
# serving HTTP on port 443. Nothing leaves the namespaces.
#
#   sudo examples/host/try-netns.sh            # builds egressd from this checkout
#   sudo EGRESSD=/usr/local/bin/egressd examples/host/try-netns.sh
#
# Needs root, ip, nft, dig and curl. Skips without root unless
# EGRESSD_REQUIRE_NETNS=1, which turns the skip into a failure
# (../lib/try-netns-lib.sh holds what the examples share).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/try-netns-lib.sh
. "$here/../lib/try-netns-lib.sh"

ns_host="egx-host-$suffix" ns_net="egx-net-$suffix"
add_netns "$ns_host" "$ns_net"
ip link add eg-h0 netns "$ns_host" type veth peer name eg-n0 netns "$ns_net"
ip -n "$ns_host" addr add 198.51.100.1/24 dev eg-h0 && ip -n "$ns_host" link set eg-h0 up
ip -n "$ns_net" addr add 198.51.100.2/24 dev eg-n0 && ip -n "$ns_net" link set eg-n0 up

# The "internet": fixed names, HTTP on 198.51.100.2:443.
serve_fake "$ns_net" net 198.51.100.2:53 198.51.100.2:443 '"github.com" = ["198.51.100.2"]
"example.org" = ["198.51.100.2"]'

# The example, pointed at the fake internet, in enforce mode, with the
# repository's sample lists standing in for the built-in ones.
enforcing_example 198.51.100.2:53 -e "s#builtin:#$root/blocklists/#"
start_in "$ns_host" "$work/host.log" env STATE_DIRECTORY="$work" "$bin" serve -config "$work/egressd.toml"

require_ready "$ns_net" http://198.51.100.2:443/healthz "fake internet not up" "$work/net.log"
require_ready "$ns_host" http://127.0.0.1:9153/readyz "egressd not ready" "$work/host.log"

check "unresolved address is dropped before any query" 28 "$(curl_rc "$ns_host" http://198.51.100.2:443/healthz)"
check "allowed name is answered" 198.51.100.2 "$(dig_short "$ns_host" 127.0.0.153 github.com)"
check "answer is in the port-scoped set" 1 "$(ip netns exec "$ns_host" nft list set inet egressd g_host_p4 | grep -c '198.51.100.2 . tcp . 443')"
check "approved address on the approved port connects" 0 "$(curl_rc "$ns_host" http://198.51.100.2:443/healthz)"
check "approved address on another port is dropped" 28 "$(curl_rc "$ns_host" http://198.51.100.2:8080/)"
check "unlisted name gets NXDOMAIN (default deny)" NXDOMAIN "$(status "$ns_host" 127.0.0.153 example.org)"
check "denied category gets NXDOMAIN" NXDOMAIN "$(status "$ns_host" 127.0.0.153 dns.google)"
check "DNS around egressd is dropped" 9 "$(dig_rc "$ns_host" 198.51.100.2 github.com)"
logged() { # the query log is written asynchronously: give it a moment
	for _ in $(seq 20); do
		[ "$(grep -c '"qname"' "$work/queries.jsonl" 2>/dev/null)" -ge "$1" ] && break
		sleep 0.1
	done
	grep -c '"qname"' "$work/queries.jsonl" 2>/dev/null
}
check "every query reaching egressd is logged" 3 "$(logged 3)"

finish
