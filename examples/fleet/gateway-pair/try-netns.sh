#!/usr/bin/env bash
# Runs the gateway pair for real, inside network namespaces this script
# creates (and removes):
#
#                        ┌ gw-a 10.70.0.2 ─ egressd + keepalived + conntrackd ─┐
#   client 10.70.0.50 ─ lan (VIP 10.70.0.1,     │ sync 10.70.255.0/30        wan (VIP 198.51.100.1) ─ net 198.51.100.2-4
#                        │  NATS 10.70.0.4)     │                               │
#                        └ gw-b 10.70.0.3 ─ egressd + keepalived + conntrackd ─┘
#
# lan and wan are bridges; "net" plays the internet (fixed names, HTTP on
# port 443 of 198.51.100.2, .3 and .4). keepalived moves both VIPs
# together; the NATS server (built from its Go module, see ../README.md)
# carries approvals between the gateways.
#
# What it checks: a client resolves through gw-a and opens a connection
# that stays busy; the approval reaches gw-b; the connection outlives its
# approval; keepalived on gw-a stops (gw-a stops forwarding too) and gw-b
# takes the VIPs. Then the connection goes on through gw-b (conntrackd
# committed it into gw-b's kernel), a new connection to an address gw-a approved passes gw-b
# without a new query, and an address nobody approved is dropped.
#
#   sudo examples/fleet/gateway-pair/try-netns.sh
#   sudo EGRESSD=/usr/local/bin/egressd NATS_SERVER=/usr/local/bin/nats-server examples/fleet/gateway-pair/try-netns.sh
#
# Needs root, ip, nft, dig, curl, keepalived, conntrackd (Debian packages
# keepalived, conntrackd) and Go (for nats-server unless NATS_SERVER is
# set). Skips without root unless EGRESSD_REQUIRE_NETNS=1.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../../lib/try-netns-lib.sh
. "$here/../../lib/try-netns-lib.sh"
for tool in keepalived conntrackd; do
	command -v "$tool" >/dev/null || skip "needs $tool (Debian package $tool)"
done
nats_server

lan="egf-lan-$suffix" client="egf-client-$suffix" gwa="egf-gwa-$suffix" gwb="egf-gwb-$suffix" net="egf-net-$suffix"
add_netns "$lan" "$client" "$gwa" "$gwb" "$net"

# The LAN and the WAN are bridges in the lan and net namespaces.
ip -n "$lan" link add br0 type bridge && ip -n "$lan" link set br0 up
ip -n "$net" link add wan0 type bridge && ip -n "$net" link set wan0 up
port() { # bridge namespace, bridge, port name, peer namespace, peer name
	ip link add "$3" netns "$1" type veth peer name "$5" netns "$4"
	ip -n "$1" link set "$3" master "$2"
	ip -n "$1" link set "$3" up
	ip -n "$4" link set "$5" up
}
port "$lan" br0 p-client "$client" eth0
port "$lan" br0 p-gwa "$gwa" lan0
port "$lan" br0 p-gwb "$gwb" lan0
port "$net" wan0 p-gwa "$gwa" wan0
port "$net" wan0 p-gwb "$gwb" wan0
ip link add sync0 netns "$gwa" type veth peer name sync0 netns "$gwb"
ip -n "$gwa" link set sync0 up && ip -n "$gwb" link set sync0 up

ip -n "$lan" addr add 10.70.0.4/24 dev br0
ip -n "$client" addr add 10.70.0.50/24 dev eth0
ip -n "$client" route add default via 10.70.0.1
ip -n "$gwa" addr add 10.70.0.2/24 dev lan0
ip -n "$gwb" addr add 10.70.0.3/24 dev lan0
ip -n "$gwa" addr add 198.51.100.11/24 dev wan0
ip -n "$gwb" addr add 198.51.100.12/24 dev wan0
ip -n "$gwa" addr add 10.70.255.1/30 dev sync0
ip -n "$gwb" addr add 10.70.255.2/30 dev sync0
for a in 2 3 4; do ip -n "$net" addr add "198.51.100.$a/24" dev wan0; done
ip -n "$net" route add 10.70.0.0/24 via 198.51.100.1
for gw in "$gwa" "$gwb"; do
	ip netns exec "$gw" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.ip_nonlocal_bind=1
	# No picking up connections mid-stream: a flow the new master has
	# not learnt from conntrackd is not let through as new either.
	ip netns exec "$gw" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0 2>/dev/null || true
done

# The "internet": fixed names, HTTP (the fake's /healthz and /metrics) on
# port 443 of every address it has.
serve_fake "$net" net 198.51.100.2:53 0.0.0.0:443 '"mirror.example.net" = ["198.51.100.2"]
"example.org" = ["198.51.100.3"]
"unlisted.example.net" = ["198.51.100.4"]'

# NATS on the LAN.
sed -e "s#/var/lib/nats#$work/nats#" "$here/nats-server.conf" >"$work/nats-server.conf"
start_in "$lan" "$work/nats.log" "$nats" -c "$work/nats-server.conf"

# Each gateway: egressd, conntrackd, keepalived, with paths into $work.
# The approvals live a short time here (max_ttl 5s, grace 1s), so the
# script can show a connection outliving its approval.
gateway() { # namespace, name (gw-a/gw-b), priority, own sync address, peer sync address
	local ns=$1 name=$2 dir=$work/$2
	mkdir -p "$dir"
	sed -e "s#^servers = \\[\"9.9.9.9.*#servers = [\"198.51.100.2:53\"]#" \
		-e "s#/var/log/egressd/queries.jsonl#$dir/queries.jsonl#" \
		-e 's#^max_ttl = "5m"#max_ttl = "5s"#' -e 's#^grace = "30s"#grace = "1s"#' \
		-e "s#^node = \"gw-a\"#node = \"$name\"#" \
		"$here/egressd.toml" >"$dir/egressd.toml"
	check_config "$dir/egressd.toml"
	sed -e "s#IPv4_address 10.70.255.1#IPv4_address $4#" \
		-e "s#IPv4_Destination_Address 10.70.255.2#IPv4_Destination_Address $5#" \
		-e "s#/var/log/conntrackd.log#$dir/conntrackd.log#" \
		-e "s#/var/lock/conntrackd.lock#$dir/conntrackd.lock#" \
		-e "s#/var/run/conntrackd.ctl#$dir/conntrackd.ctl#" \
		"$here/conntrackd.conf" >"$dir/conntrackd.conf"
	# The notify script runs from the work folder, which is not a root-only
	# path all the way up (/tmp), so script security is left off here.
	cp "$here/conntrackd-notify.sh" "$dir/"
	sed -e "s#router_id gw-a#router_id $name#" -e "s#priority 150#priority $3#" \
		-e '/enable_script_security/d' \
		-e "s#/etc/keepalived/conntrackd-notify.sh#$dir/conntrackd-notify.sh#" \
		-e "s#/etc/conntrackd/conntrackd.conf#$dir/conntrackd.conf#" \
		"$here/keepalived.conf" >"$dir/keepalived.conf"
	start_in "$ns" "$dir/egressd.log" env STATE_DIRECTORY="$dir" "$bin" serve -config "$dir/egressd.toml"
	ip netns exec "$ns" conntrackd -C "$dir/conntrackd.conf" >"$dir/conntrackd.out" 2>&1 &
	pids+=($!)
	# keepalived passes the notify script's output on: into its log too.
	ip netns exec "$ns" keepalived --dont-fork --log-console --vrrp \
		-f "$dir/keepalived.conf" -p "$dir/keepalived.pid" -r "$dir/vrrp.pid" -c "$dir/checkers.pid" \
		>"$dir/keepalived.log" 2>&1 &
	keepalived_pid=$!
	pids+=("$keepalived_pid")
}
require_ready "$lan" http://127.0.0.1:8222/healthz "nats-server not up" "$work/nats.log"
gateway "$gwa" gw-a 150 10.70.255.1 10.70.255.2
keepalived_a=$keepalived_pid
gateway "$gwb" gw-b 100 10.70.255.2 10.70.255.1
require_ready "$net" http://198.51.100.2:443/healthz "fake internet not up" "$work/net.log"
require_ready "$gwa" http://127.0.0.1:9153/readyz "egressd on gw-a not ready" "$work/gw-a/egressd.log"
require_ready "$gwb" http://127.0.0.1:9153/readyz "egressd on gw-b not ready" "$work/gw-b/egressd.log"

has_addr() { local out; out=$(ip -n "$1" -4 addr show) && grep -q "inet $2/" <<<"$out"; } # namespace, address
in_set() { set_has "$1" g_lan_d4 "$2"; }                                                 # namespace, address
within() { # tenths of a second, command...: whether the command succeeds within that time
	local n=$1 i
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}
yes_no() { if "$@"; then echo yes; else echo no; fi; }

# keepalived elects gw-a (priority 150) after advert_int 1 s times 3 plus
# skew: give it 5 s.
check "gw-a holds the VIPs" yes "$(yes_no within 50 has_addr "$gwa" 10.70.0.1)"
check "gw-b does not" no "$(yes_no has_addr "$gwb" 10.70.0.1)"

check "client resolves mirror.example.net through the VIP (gw-a)" 198.51.100.2 "$(answer "$client" 10.70.0.1 mirror.example.net)"
# One connection kept busy for 20 s: 40 requests, two a second, over one
# kept-alive HTTP connection (curl reuses it; %{num_connects} counts the
# connections each request opened). That is well over the 6 s an
# approval lives here: a connection that outlives its approval and is
# still busy when the VIP moves.
requests=()
for _ in $(seq 40); do requests+=(-o /dev/null http://198.51.100.2:443/healthz); done
ip netns exec "$client" curl -s -m 5 --rate 2/s -w '%{http_code} %{num_connects}\n' "${requests[@]}" \
	>"$work/flow" 2>"$work/flow.err" &
download=$!
pids+=("$download")
check "the approval reaches gw-b through NATS (within 2 s)" yes "$(yes_no within 20 in_set "$gwb" 198.51.100.2)"
# The element lives max_ttl (5 s) plus grace (1 s) from the answer.
check "the approval expires on both gateways (within 7 s)" yes \
	"$(yes_no within 70 eval "! in_set $gwa 198.51.100.2 && ! in_set $gwb 198.51.100.2")"
check "the connection outlives its approval" yes "$(yes_no kill -0 "$download")"

check "client resolves example.org through gw-a" 198.51.100.3 "$(answer "$client" 10.70.0.1 example.org)"
check "that approval reaches gw-b (within 2 s)" yes "$(yes_no within 20 in_set "$gwb" 198.51.100.3)"

# Failover: keepalived on gw-a stops (it hands over at once with priority
# 0), and gw-a stops forwarding, as if it were gone.
kill "$keepalived_a"
ip netns exec "$gwa" sysctl -qw net.ipv4.ip_forward=0
check "gw-b takes the VIPs (within 5 s)" yes "$(yes_no within 50 eval "has_addr $gwb 10.70.0.1 && has_addr $gwb 198.51.100.1")"
check "the connection is still busy at the failover" yes "$(yes_no kill -0 "$download")"
check "new connection to example.org passes gw-b without a new query" 0 "$(curl_rc "$client" http://198.51.100.3:443/healthz)"
check "gw-b was not asked for example.org" 0 "$(cat "$work/gw-b/queries.jsonl" 2>/dev/null | grep -c '"example.org')"
check "an address nobody approved is dropped at gw-b" 28 "$(curl_rc "$client" http://198.51.100.4:443/healthz)"
check "client resolves through the VIP, now gw-b" 198.51.100.2 "$(answer "$client" 10.70.0.1 mirror.example.net)"
wait "$download"
check "the connection opened through gw-a carries on through gw-b: all 40 requests answered" 40 \
	"$(grep -c '^200 ' "$work/flow")"
check "over the one connection opened before the failover (conntrackd)" 1 "$(awk '{n += $2} END {print n}' "$work/flow")"

finish
