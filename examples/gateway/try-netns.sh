#!/usr/bin/env bash
# Runs examples/gateway/egressd.toml for real, inside network namespaces
# this script creates (and removes):
#
#   srv 10.20.1.20 ─┐
#   ws 10.20.10.50 ─┴─ lan0 10.20.0.1 ┐
#   guest 10.30.0.50 ── guest0 10.30.0.1 ├─ gw: egressd, forward hook ── wan0 ── net 198.51.100.2
#
# "net" plays the internet with a second egressd answering fixed names and
# serving HTTP on port 443. Nothing leaves the namespaces.
#
#   sudo examples/gateway/try-netns.sh            # builds egressd from this checkout
#   sudo EGRESSD=/usr/local/bin/egressd examples/gateway/try-netns.sh
#
# Needs root, ip, nft, dig and curl. Skips without root unless
# EGRESSD_REQUIRE_NETNS=1, which turns the skip into a failure
# (../lib/try-netns-lib.sh holds what the examples share).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/try-netns-lib.sh
. "$here/../lib/try-netns-lib.sh"

gw="egx-gw-$suffix" srv="egx-srv-$suffix" ws="egx-ws-$suffix" guest="egx-guest-$suffix" net="egx-net-$suffix"
add_netns "$gw" "$srv" "$ws" "$guest" "$net"
ip netns exec "$gw" sysctl -qw net.ipv4.ip_forward=1
ip -n "$gw" link add lan0 type bridge
ip -n "$gw" addr add 10.20.0.1/16 dev lan0
ip -n "$gw" link set lan0 up
link() { # client namespace, client address/len, gateway-side name, bridge or "" , gateway address/len
	ip link add eg-c0 netns "$1" type veth peer name "$3" netns "$gw"
	ip -n "$1" addr add "$2" dev eg-c0
	ip -n "$1" link set eg-c0 up
	if [ -n "$4" ]; then
		ip -n "$gw" link set "$3" master "$4"
	else
		ip -n "$gw" addr add "$5" dev "$3"
	fi
	ip -n "$gw" link set "$3" up
}
link "$srv" 10.20.1.20/16 lan-srv lan0
link "$ws" 10.20.10.50/16 lan-ws lan0
link "$guest" 10.30.0.50/24 guest0 "" 10.30.0.1/24
link "$net" 198.51.100.2/24 wan0 "" 198.51.100.1/24
ip -n "$srv" route add default via 10.20.0.1
ip -n "$ws" route add default via 10.20.0.1
ip -n "$guest" route add default via 10.30.0.1
ip -n "$net" route add 10.20.0.0/16 via 198.51.100.1
ip -n "$net" route add 10.30.0.0/24 via 198.51.100.1

# The "internet": fixed names, HTTP on 198.51.100.2:443.
serve_fake "$net" net 198.51.100.2:53 198.51.100.2:443 '"mirror.example.net" = ["198.51.100.2"]
"example.org" = ["198.51.100.2"]'

# The example, pointed at the fake internet, in enforce mode.
enforcing_example 198.51.100.2:53 -e "s#\\.\\./\\.\\./blocklists/#$root/blocklists/#"
start_in "$gw" "$work/gw.log" env STATE_DIRECTORY="$work" "$bin" serve -config "$work/egressd.toml"

require_ready "$net" http://198.51.100.2:443/healthz "fake internet not up" "$work/net.log"
require_ready "$gw" http://127.0.0.1:9153/readyz "egressd not ready" "$work/gw.log"

site=http://198.51.100.2:443/healthz

check "guest: unresolved address is dropped" 28 "$(curl_rc "$guest" $site)"
check "servers: allowed name is answered" 198.51.100.2 "$(answer "$srv" 10.20.0.1 mirror.example.net)"
check "servers: answer is in the group's port-scoped set" 1 \
	"$(ip netns exec "$gw" nft list set inet egressd g_servers_p4 | grep -c '198.51.100.2 . tcp . 443')"
check "servers: approved port connects" 0 "$(curl_rc "$srv" $site)"
check "servers: other port is dropped" 28 "$(curl_rc "$srv" http://198.51.100.2:8080/)"
check "servers: office name from [hosts]" 10.20.1.20 "$(answer "$srv" 10.20.0.1 nas.office.internal)"
check "servers: unlisted name gets NXDOMAIN (default deny)" NXDOMAIN "$(status "$srv" 10.20.0.1 example.org)"
check "servers: DNS around egressd is dropped" 9 "$(dig_rc "$srv" 198.51.100.2 example.org)"
check "workstations: unlisted name is answered (default allow)" 198.51.100.2 "$(answer "$ws" 10.20.0.1 example.org)"
check "workstations: any port passes the firewall (refused by the host, not dropped)" 7 \
	"$(curl_rc "$ws" http://198.51.100.2:8080/)"
check "workstations: denied category gets NXDOMAIN" NXDOMAIN "$(status "$ws" 10.20.0.1 dns.google)"
check "guests: office name is sinkholed to the gateway" 10.30.0.1 "$(answer "$guest" 10.30.0.1 nas.office.internal)"
check "guests: other groups' approvals do not apply" 28 "$(curl_rc "$guest" $site)"

finish
