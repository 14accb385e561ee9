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
# EGRESSD_REQUIRE_NETNS=1, which turns the skip into a failure
# (../lib/try-netns-lib.sh holds what the examples share).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/try-netns-lib.sh
. "$here/../lib/try-netns-lib.sh"

pod="egx-pod-$suffix" cluster="egx-cluster-$suffix"
add_netns "$pod" "$cluster"
ip link add eth0 netns "$pod" type veth peer name eg-c0 netns "$cluster"
ip -n "$pod" addr add 10.244.1.7/24 dev eth0 && ip -n "$pod" link set eth0 up
ip -n "$pod" route add default via 10.244.1.1
ip -n "$cluster" addr add 10.244.1.1/24 dev eg-c0 && ip -n "$cluster" link set eg-c0 up
# The cluster DNS Service, a Service ClusterIP and an external site, all on
# the far side of the pod's default route.
ip -n "$cluster" addr add 10.96.0.10/32 dev lo
ip -n "$cluster" addr add 10.96.5.5/32 dev lo
ip -n "$cluster" addr add 198.51.100.2/32 dev lo

serve_fake "$cluster" cluster 10.96.0.10:53 0.0.0.0:443 '"orders.shop.svc.cluster.local" = ["10.96.5.5"]
"api.stripe.com" = ["198.51.100.2"]
"example.org" = ["198.51.100.2"]' 'allow_private_answers = true'

# The sidecar policy as the ConfigMap carries it, with the repository's
# sample lists standing in for the built-in ones.
sed -e "s#^state_dir = .*#state_dir = \"$work\"#" \
	-e "s#builtin:#$root/blocklists/#" \
	"$here/egressd.toml" >"$work/egressd.toml"
check_config "$work/egressd.toml"
start_in "$pod" "$work/pod.log" "$bin" serve -config "$work/egressd.toml" >"$work/queries.jsonl"

require_ready "$cluster" http://10.96.5.5:443/healthz "fake cluster not up" "$work/cluster.log"
require_ready "$pod" http://127.0.0.1:9153/readyz "egressd not ready" "$work/pod.log"

check "unresolved Service address is dropped" 28 "$(curl_rc "$pod" http://10.96.5.5:443/healthz)"
check "Service name is answered through the cluster DNS" 10.96.5.5 "$(answer "$pod" 127.0.0.1 orders.shop.svc.cluster.local)"
check "Service address connects once answered" 0 "$(curl_rc "$pod" http://10.96.5.5:443/healthz)"
check "external API is answered" 198.51.100.2 "$(answer "$pod" 127.0.0.1 api.stripe.com)"
check "external API connects on 443" 0 "$(curl_rc "$pod" http://198.51.100.2:443/healthz)"
check "external API on another port is dropped" 28 "$(curl_rc "$pod" http://198.51.100.2:8080/)"
check "unlisted name gets NXDOMAIN (default deny)" NXDOMAIN "$(status "$pod" 127.0.0.1 example.org)"
check "denied category gets NXDOMAIN" NXDOMAIN "$(status "$pod" 127.0.0.1 dns.google)"
check "DNS to the cluster DNS directly is dropped" 9 "$(dig_rc "$pod" 10.96.0.10 example.org)"

finish
