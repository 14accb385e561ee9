#!/usr/bin/env bash
# Runs the sidecar policy (examples/kubernetes/egressd.toml, the ConfigMap's
# content) for real, inside two network namespaces this script creates (and
# removes): "pod" stands for the pod's network namespace, with egressd on
# 127.0.0.1:53 and the output hook; "cluster" holds the cluster DNS Service
# address (10.96.0.10, a second egressd answering fixed names), a Service
# address and an external site. Nothing leaves the namespaces.
#
#   sudo examples/kubernetes/try-netns.sh            # builds egressd from this checkout
#   sudo EGRESSD=/usr/local/bin/egressd examples/kubernetes/try-netns.sh
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
pod="egx-pod-$suffix" cluster="egx-cluster-$suffix"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$pod" 2>/dev/null
	ip netns del "$cluster" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

bin=${EGRESSD:-}
if [ -z "$bin" ]; then
	bin=$work/egressd
	(cd "$root" && CGO_ENABLED=0 go build -o "$bin" ./cmd/egressd) || { echo "FAIL: build"; exit 1; }
fi

ip netns add "$pod" && ip netns add "$cluster" || exit 1
ip link add eth0 netns "$pod" type veth peer name eg-c0 netns "$cluster"
ip -n "$pod" link set lo up && ip -n "$cluster" link set lo up
ip -n "$pod" addr add 10.244.1.7/24 dev eth0 && ip -n "$pod" link set eth0 up
ip -n "$pod" route add default via 10.244.1.1
ip -n "$cluster" addr add 10.244.1.1/24 dev eg-c0 && ip -n "$cluster" link set eg-c0 up
# The cluster DNS Service, a Service ClusterIP and an external site, all on
# the far side of the pod's default route.
ip -n "$cluster" addr add 10.96.0.10/32 dev lo
ip -n "$cluster" addr add 10.96.5.5/32 dev lo
ip -n "$cluster" addr add 198.51.100.2/32 dev lo

cat >"$work/cluster.toml" <<EOF
[server]
listen = ["10.96.0.10:53"]
clients = ["0.0.0.0/0"]
[upstream]
servers = ["127.0.0.1:53"]
[firewall]
backend = "none"
[log]
queries = "none"
[metrics]
listen = "0.0.0.0:443"
[hosts]
"orders.shop.svc.cluster.local" = ["10.96.5.5"]
"api.stripe.com" = ["198.51.100.2"]
"example.org" = ["198.51.100.2"]
[[group]]
name = "everyone"
clients = ["0.0.0.0/0"]
default = "allow"
allow_private_answers = true
EOF
ip netns exec "$cluster" "$bin" serve -config "$work/cluster.toml" 2>"$work/cluster.log" &
pids+=($!)

# The sidecar policy as the ConfigMap carries it, with the repository's
# sample lists standing in for the built-in ones.
sed -e "s#^state_dir = .*#state_dir = \"$work\"#" \
	-e "s#builtin:#$root/blocklists/#" \
	"$here/egressd.toml" >"$work/egressd.toml"
"$bin" check -config "$work/egressd.toml" || { echo "FAIL: check"; exit 1; }
ip netns exec "$pod" "$bin" serve -config "$work/egressd.toml" >"$work/queries.jsonl" 2>"$work/pod.log" &
pids+=($!)

wait_ready() { # namespace, url
	for _ in $(seq 50); do
		ip netns exec "$1" curl -fs -m 1 -o /dev/null "$2" && return 0
		sleep 0.1
	done
	return 1
}
wait_ready "$cluster" http://10.96.5.5:443/healthz || { echo "FAIL: fake cluster not up"; cat "$work/cluster.log"; exit 1; }
wait_ready "$pod" http://127.0.0.1:9153/readyz || { echo "FAIL: egressd not ready"; cat "$work/pod.log"; exit 1; }

passed=0 failed=0
check() { # description, expected, actual
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1)); echo "ok   $1"
	else
		failed=$((failed + 1)); echo "FAIL $1: want $2, got $3"
	fi
}
in_pod() { ip netns exec "$pod" "$@"; }
answer() { in_pod dig +time=2 +tries=1 +short @127.0.0.1 "$1" | head -1; }
status() { in_pod dig +time=2 +tries=1 @127.0.0.1 "$1" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
curl_rc() { in_pod curl -s -m 3 -o /dev/null "$1"; echo $?; }

check "unresolved Service address is dropped" 28 "$(curl_rc http://10.96.5.5:443/healthz)"
check "Service name is answered through the cluster DNS" 10.96.5.5 "$(answer orders.shop.svc.cluster.local)"
check "Service address connects once answered" 0 "$(curl_rc http://10.96.5.5:443/healthz)"
check "external API is answered" 198.51.100.2 "$(answer api.stripe.com)"
check "external API connects on 443" 0 "$(curl_rc http://198.51.100.2:443/healthz)"
check "external API on another port is dropped" 28 "$(curl_rc http://198.51.100.2:8080/)"
check "unlisted name gets NXDOMAIN (default deny)" NXDOMAIN "$(status example.org)"
check "denied category gets NXDOMAIN" NXDOMAIN "$(status dns.google)"
check "DNS to the cluster DNS directly is dropped" 9 \
	"$(in_pod dig +time=2 +tries=1 @10.96.0.10 example.org >/dev/null; echo $?)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
