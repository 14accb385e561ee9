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
# EGRESSD_REQUIRE_NETNS=1, which turns the skip into a failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

skip() {
	if [ "${EGRESSD_REQUIRE_NETNS:-}" = 1 ]; then
		echo "FAIL: $* (EGRESSD_REQUIRE_NETNS=1)"
		exit 1
	fi
	echo "SKIP: $*"
	exit 0
}
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces and nftables"
for tool in ip nft dig curl; do
	command -v "$tool" >/dev/null || skip "needs $tool"
done

work=$(mktemp -d)
suffix=$$
gw="egx-gw-$suffix" srv="egx-srv-$suffix" ws="egx-ws-$suffix" guest="egx-guest-$suffix" net="egx-net-$suffix"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for ns in "$gw" "$srv" "$ws" "$guest" "$net"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

bin=${EGRESSD:-}
if [ -z "$bin" ]; then
	bin=$work/egressd
	(cd "$root" && CGO_ENABLED=0 go build -o "$bin" ./cmd/egressd) || { echo "FAIL: build"; exit 1; }
fi

for ns in "$gw" "$srv" "$ws" "$guest" "$net"; do
	ip netns add "$ns" || exit 1
	ip -n "$ns" link set lo up
done
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

# The "internet": names answered from [hosts], HTTP (the metrics
# endpoint's /healthz) on 198.51.100.2:443, no firewall.
cat >"$work/net.toml" <<EOF
[server]
listen = ["198.51.100.2:53"]
clients = ["0.0.0.0/0"]
[upstream]
servers = ["127.0.0.1:53"]
[firewall]
backend = "none"
[log]
queries = "none"
[metrics]
listen = "198.51.100.2:443"
[hosts]
"mirror.example.net" = ["198.51.100.2"]
"example.org" = ["198.51.100.2"]
[[group]]
name = "everyone"
clients = ["0.0.0.0/0"]
default = "allow"
EOF
ip netns exec "$net" "$bin" serve -config "$work/net.toml" 2>"$work/net.log" &
pids+=($!)

# The example, pointed at the fake internet, in enforce mode.
sed -e 's#^servers = .*#servers = ["198.51.100.2:53"]#' \
	-e 's#^mode = "audit"#mode = "enforce"#' \
	-e "s#/var/log/egressd/queries.jsonl#$work/queries.jsonl#" \
	-e "s#\\.\\./\\.\\./blocklists/#$root/blocklists/#" \
	"$here/egressd.toml" >"$work/egressd.toml"
"$bin" check -config "$work/egressd.toml" || { echo "FAIL: check"; exit 1; }
ip netns exec "$gw" env STATE_DIRECTORY="$work" "$bin" serve -config "$work/egressd.toml" 2>"$work/gw.log" &
pids+=($!)

wait_ready() { # namespace, url
	for _ in $(seq 50); do
		ip netns exec "$1" curl -fs -m 1 -o /dev/null "$2" && return 0
		sleep 0.1
	done
	return 1
}
wait_ready "$net" http://198.51.100.2:443/healthz || { echo "FAIL: fake internet not up"; cat "$work/net.log"; exit 1; }
wait_ready "$gw" http://127.0.0.1:9153/readyz || { echo "FAIL: egressd not ready"; cat "$work/gw.log"; exit 1; }

passed=0 failed=0
check() { # description, expected, actual
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1)); echo "ok   $1"
	else
		failed=$((failed + 1)); echo "FAIL $1: want $2, got $3"
	fi
}
answer() { ip netns exec "$1" dig +time=2 +tries=1 +short "@$2" "$3" | head -1; }
status() { ip netns exec "$1" dig +time=2 +tries=1 "@$2" "$3" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
curl_rc() { ip netns exec "$1" curl -s -m 3 -o /dev/null "$2"; echo $?; }
site=http://198.51.100.2:443/healthz

check "guest: unresolved address is dropped" 28 "$(curl_rc "$guest" $site)"
check "servers: allowed name is answered" 198.51.100.2 "$(answer "$srv" 10.20.0.1 mirror.example.net)"
check "servers: answer is in the group's port-scoped set" 1 \
	"$(ip netns exec "$gw" nft list set inet egressd g_servers_p4 | grep -c '198.51.100.2 . tcp . 443')"
check "servers: approved port connects" 0 "$(curl_rc "$srv" $site)"
check "servers: other port is dropped" 28 "$(curl_rc "$srv" http://198.51.100.2:8080/)"
check "servers: office name from [hosts]" 10.20.1.20 "$(answer "$srv" 10.20.0.1 nas.office.internal)"
check "servers: unlisted name gets NXDOMAIN (default deny)" NXDOMAIN "$(status "$srv" 10.20.0.1 example.org)"
check "servers: DNS around egressd is dropped" 9 \
	"$(ip netns exec "$srv" dig +time=2 +tries=1 @198.51.100.2 example.org >/dev/null; echo $?)"
check "workstations: unlisted name is answered (default allow)" 198.51.100.2 "$(answer "$ws" 10.20.0.1 example.org)"
check "workstations: any port passes the firewall (refused by the host, not dropped)" 7 \
	"$(curl_rc "$ws" http://198.51.100.2:8080/)"
check "workstations: denied category gets NXDOMAIN" NXDOMAIN "$(status "$ws" 10.20.0.1 dns.google)"
check "guests: office name is sinkholed to the gateway" 10.30.0.1 "$(answer "$guest" 10.30.0.1 nas.office.internal)"
check "guests: other groups' approvals do not apply" 28 "$(curl_rc "$guest" $site)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
