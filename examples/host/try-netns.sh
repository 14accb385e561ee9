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
ns_host="egx-host-$suffix" ns_net="egx-net-$suffix"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$ns_host" 2>/dev/null
	ip netns del "$ns_net" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

bin=${EGRESSD:-}
if [ -z "$bin" ]; then
	bin=$work/egressd
	(cd "$root" && CGO_ENABLED=0 go build -o "$bin" ./cmd/egressd) || { echo "FAIL: build"; exit 1; }
fi

ip netns add "$ns_host" && ip netns add "$ns_net" || exit 1
ip link add eg-h0 netns "$ns_host" type veth peer name eg-n0 netns "$ns_net"
ip -n "$ns_host" link set lo up && ip -n "$ns_net" link set lo up
ip -n "$ns_host" addr add 198.51.100.1/24 dev eg-h0 && ip -n "$ns_host" link set eg-h0 up
ip -n "$ns_net" addr add 198.51.100.2/24 dev eg-n0 && ip -n "$ns_net" link set eg-n0 up

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
"github.com" = ["198.51.100.2"]
"example.org" = ["198.51.100.2"]
[[group]]
name = "everyone"
clients = ["0.0.0.0/0"]
default = "allow"
EOF
ip netns exec "$ns_net" "$bin" serve -config "$work/net.toml" 2>"$work/net.log" &
pids+=($!)

# The example, pointed at the fake internet, in enforce mode, with the
# repository's sample lists standing in for the built-in ones.
sed -e 's#^servers = .*#servers = ["198.51.100.2:53"]#' \
	-e 's#^mode = "audit"#mode = "enforce"#' \
	-e "s#/var/log/egressd/queries.jsonl#$work/queries.jsonl#" \
	-e "s#builtin:#$root/blocklists/#" \
	"$here/egressd.toml" >"$work/egressd.toml"
"$bin" check -config "$work/egressd.toml" || { echo "FAIL: check"; exit 1; }
ip netns exec "$ns_host" env STATE_DIRECTORY="$work" "$bin" serve -config "$work/egressd.toml" 2>"$work/host.log" &
pids+=($!)

in_host() { ip netns exec "$ns_host" "$@"; }
wait_ready() { # namespace, url
	for _ in $(seq 50); do
		ip netns exec "$1" curl -fs -m 1 -o /dev/null "$2" && return 0
		sleep 0.1
	done
	return 1
}
wait_ready "$ns_net" http://198.51.100.2:443/healthz || { echo "FAIL: fake internet not up"; cat "$work/net.log"; exit 1; }
wait_ready "$ns_host" http://127.0.0.1:9153/readyz || { echo "FAIL: egressd not ready"; cat "$work/host.log"; exit 1; }

passed=0 failed=0
check() { # description, expected, actual
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1)); echo "ok   $1"
	else
		failed=$((failed + 1)); echo "FAIL $1: want $2, got $3"
	fi
}
dig_status() { in_host dig +time=2 +tries=1 "$@" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
curl_rc() { in_host curl -s -m 3 -o /dev/null "$1"; echo $?; }

check "unresolved address is dropped before any query" 28 "$(curl_rc http://198.51.100.2:443/healthz)"
check "allowed name is answered" 198.51.100.2 "$(in_host dig +time=2 +tries=1 +short @127.0.0.153 github.com)"
check "answer is in the port-scoped set" 1 "$(in_host nft list set inet egressd g_host_p4 | grep -c '198.51.100.2 . tcp . 443')"
check "approved address on the approved port connects" 0 "$(curl_rc http://198.51.100.2:443/healthz)"
check "approved address on another port is dropped" 28 "$(curl_rc http://198.51.100.2:8080/)"
check "unlisted name gets NXDOMAIN (default deny)" NXDOMAIN "$(dig_status @127.0.0.153 example.org)"
check "denied category gets NXDOMAIN" NXDOMAIN "$(dig_status @127.0.0.153 dns.google)"
check "DNS around egressd is dropped" 9 "$(in_host dig +time=2 +tries=1 @198.51.100.2 github.com >/dev/null; echo $?)"
logged() { # the query log is written asynchronously: give it a moment
	for _ in $(seq 20); do
		[ "$(grep -c '"qname"' "$work/queries.jsonl" 2>/dev/null)" -ge "$1" ] && break
		sleep 0.1
	done
	grep -c '"qname"' "$work/queries.jsonl" 2>/dev/null
}
check "every query reaching egressd is logged" 3 "$(logged 3)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
