#!/usr/bin/env bash
# Runs the central resolver with two edge agents for real, inside network
# namespaces this script creates (and removes):
#
#   c1 10.80.1.10 ── edge1 (egressd agent) ─┐
#                                            hub (router; the internet 198.51.100.2-5)
#   c2 10.80.2.10 ── edge2 (egressd agent) ─┤
#                                            └── core: resolver 10.80.0.53 (egressd serve),
#                                                NATS 10.80.0.4, .5, .6 (a 3-node JetStream cluster)
#
# The clients ask the central resolver; each edge enforces what it
# approved. The resolver confirms with both edges (fleet.confirm), so an
# answer leaves only once both hold the address. nats-server is built from
# its Go module (see ../README.md) unless NATS_SERVER names one.
#
#   sudo examples/fleet/central/try-netns.sh
#   sudo EGRESSD=/usr/local/bin/egressd NATS_SERVER=/usr/local/bin/nats-server examples/fleet/central/try-netns.sh
#
# Needs root, ip, nft, dig, curl and Go (for nats-server unless
# NATS_SERVER is set). Skips without root unless EGRESSD_REQUIRE_NETNS=1.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../../lib/try-netns-lib.sh
. "$here/../../lib/try-netns-lib.sh"
nats_server

c1="egc-c1-$suffix" c2="egc-c2-$suffix" edge1="egc-edge1-$suffix" edge2="egc-edge2-$suffix"
hub="egc-hub-$suffix" core="egc-core-$suffix"
add_netns "$c1" "$c2" "$edge1" "$edge2" "$hub" "$core"
link() { # namespace a, name in a, address in a, namespace b, name in b, address in b
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
	ip -n "$1" addr add "$3" dev "$2" && ip -n "$1" link set "$2" up
	ip -n "$4" addr add "$6" dev "$5" && ip -n "$4" link set "$5" up
}
link "$c1" eth0 10.80.1.10/24 "$edge1" lan0 10.80.1.1/24
link "$c2" eth0 10.80.2.10/24 "$edge2" lan0 10.80.2.1/24
link "$edge1" wan0 10.80.11.1/24 "$hub" edge1 10.80.11.2/24
link "$edge2" wan0 10.80.12.1/24 "$hub" edge2 10.80.12.2/24
link "$core" eth0 10.80.0.53/24 "$hub" core 10.80.0.1/24
for a in 4 5 6; do ip -n "$core" addr add "10.80.0.$a/24" dev eth0; done
for a in 2 3 4 5; do ip -n "$hub" addr add "198.51.100.$a/32" dev lo; done
ip -n "$c1" route add default via 10.80.1.1
ip -n "$c2" route add default via 10.80.2.1
ip -n "$edge1" route add default via 10.80.11.2
ip -n "$edge2" route add default via 10.80.12.2
ip -n "$core" route add default via 10.80.0.1
ip -n "$hub" route add 10.80.1.0/24 via 10.80.11.1
ip -n "$hub" route add 10.80.2.0/24 via 10.80.12.1
for ns in "$edge1" "$edge2" "$hub"; do ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1; done

# The "internet" in the hub: fixed names, HTTP on port 443 of its addresses.
serve_fake "$hub" net 198.51.100.2:53 0.0.0.0:443 '"mirror.example.net" = ["198.51.100.2"]
"example.org" = ["198.51.100.3"]
"downloads.example.net" = ["198.51.100.5"]'

# The NATS cluster.
nats_pids=()
for n in 1 2 3; do
	mkdir -p "$work/nats$n"
	start_in "$core" "$work/nats$n.log" env NATS_NAME="nats$n" NATS_HOST="10.80.0.$((n + 3))" NATS_STORE="$work/nats$n" \
		"$nats" -c "$here/nats-server.conf"
	nats_pids+=("${pids[-1]}")
done
for n in 1 2 3; do
	require_ready "$core" "http://10.80.0.$((n + 3)):8222/healthz" "nats$n not up" "$work/nats$n.log"
done

# The resolver and the agents, pointed at the fake internet.
sed -e 's#^servers = \["9.9.9.9.*#servers = ["198.51.100.2:53"]#' \
	-e "s#/var/log/egressd/queries.jsonl#$work/queries.jsonl#" "$here/resolver.toml" >"$work/resolver.toml"
check_config "$work/resolver.toml"
start_in "$core" "$work/resolver.log" env STATE_DIRECTORY="$work" "$bin" serve -config "$work/resolver.toml"
for edge in edge1 edge2; do
	sed -e "s#^node = \"edge1\"#node = \"$edge\"#" "$here/agent.toml" >"$work/$edge.toml"
	check_config "$work/$edge.toml"
	ns=$edge1
	[ "$edge" = edge2 ] && ns=$edge2
	start_in "$ns" "$work/$edge.log" env STATE_DIRECTORY="$work/$edge" "$bin" agent -config "$work/$edge.toml"
done
require_ready "$hub" http://198.51.100.2:443/healthz "fake internet not up" "$work/net.log"
require_ready "$core" http://127.0.0.1:9153/readyz "resolver not ready" "$work/resolver.log"
require_ready "$edge1" http://127.0.0.1:9153/readyz "agent edge1 not ready" "$work/edge1.log"
require_ready "$edge2" http://127.0.0.1:9153/readyz "agent edge2 not ready" "$work/edge2.log"

in_set() { set_has "$1" g_branches_d4 "$2"; } # namespace, address
yes_no() { if "$@"; then echo yes; else echo no; fi; }
site=http://198.51.100.2:443/healthz

check "c1: unresolved address is dropped at edge1" 28 "$(curl_rc "$c1" $site)"
check "c1 resolves mirror.example.net through the central resolver" 198.51.100.2 "$(answer "$c1" 10.80.0.53 mirror.example.net)"
check "edge1 held it before the answer (confirm)" yes "$(yes_no in_set "$edge1" 198.51.100.2)"
check "edge2 held it before the answer (confirm)" yes "$(yes_no in_set "$edge2" 198.51.100.2)"
check "c1 connects through edge1" 0 "$(curl_rc "$c1" $site)"
check "c2 connects through edge2 without asking (same group)" 0 "$(curl_rc "$c2" $site)"
check "c2 resolves example.org (port-scoped rule :443)" 198.51.100.3 "$(answer "$c2" 10.80.0.53 example.org)"
check "c1 connects to example.org:443" 0 "$(curl_rc "$c1" http://198.51.100.3:443/healthz)"
check "c1: example.org on another port is dropped" 28 "$(curl_rc "$c1" http://198.51.100.3:8080/)"
check "c2: an address nobody approved is dropped at edge2" 28 "$(curl_rc "$c2" http://198.51.100.4:443/healthz)"
check "c1: DNS around the central resolver is dropped at edge1" 9 "$(dig_rc "$c1" 198.51.100.2 example.org)"
check "unlisted name gets NXDOMAIN" NXDOMAIN "$(status "$c1" 10.80.0.53 unlisted.example.net)"

# One NATS server dies: the other two keep the stream (replicated), and
# the resolver and agents carry on through them.
# If nats1 led the stream, stores wait for a new leader: nats-server elects
# one within its longest election timeout (9 s) plus a campaign (0.8 s at
# most), and meanwhile each answer fails closed after confirm_timeout (1 s),
# SERVFAIL, which a stub resolver retries. So c2 retries for 9 + 0.8 + 1 s
# plus dig's own 2 s and a reconnect (0.25 s), 15 s in all.
kill "${nats_pids[0]}"
killed=$SECONDS
got=""
while [ -z "$got" ] && [ $((SECONDS - killed)) -lt 15 ]; do
	got=$(answer "$c2" 10.80.0.53 downloads.example.net)
done
echo "     (answered $((SECONDS - killed)) s after the kill)"
check "after nats1 is killed, c2 resolves downloads.example.net" 198.51.100.5 "$got"
check "and c1 connects to it through edge1" 0 "$(curl_rc "$c1" http://198.51.100.5:443/healthz)"

finish
