# shellcheck shell=bash
# Shared by examples/*/try-netns.sh, which source it. It checks for root
# and the tools, makes a work folder and builds egressd ($bin; $EGRESSD
# picks a prebuilt one), creates namespaces and removes them on exit with
# every program started through start_in, and counts checks: a script
# ends with `finish`, whose status is the script's.
#
# Skips without root unless EGRESSD_REQUIRE_NETNS=1, which turns the skip
# into a failure.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

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
# shellcheck disable=SC2034 # for the scripts' namespace names
suffix=$$
namespaces=()
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

bin=${EGRESSD:-}
if [ -z "$bin" ]; then
	bin=$work/egressd
	(cd "$root" && CGO_ENABLED=0 go build -o "$bin" ./cmd/egressd) || { echo "FAIL: build"; exit 1; }
fi

add_netns() { # names...: created with loopback up, deleted on exit
	local ns
	for ns in "$@"; do
		ip netns add "$ns" || exit 1
		namespaces+=("$ns")
		ip -n "$ns" link set lo up
	done
}

# fake_dns_toml listen-address metrics-address hosts [group-lines] prints
# the config of an egressd that stands for the outside world: names
# answered from the given [hosts] lines, HTTP (the metrics endpoint's
# /healthz) on the metrics address, no firewall, everything allowed.
fake_dns_toml() {
	cat <<EOT
[server]
listen = ["$1"]
clients = ["0.0.0.0/0"]
[upstream]
servers = ["127.0.0.1:53"]
[firewall]
backend = "none"
[log]
queries = "none"
[metrics]
listen = "$2"
[hosts]
$3
[[group]]
name = "everyone"
clients = ["0.0.0.0/0"]
default = "allow"
EOT
	[ -z "${4:-}" ] || printf '%s\n' "$4"
}

serve_fake() { # namespace, name (of $work/NAME.toml and NAME.log), then fake_dns_toml's arguments
	local ns=$1 name=$2
	shift 2
	fake_dns_toml "$@" >"$work/$name.toml"
	start_in "$ns" "$work/$name.log" "$bin" serve -config "$work/$name.toml"
}

check_config() { # config file
	"$bin" check -config "$1" || { echo "FAIL: check"; exit 1; }
}

# enforcing_example upstream [sed-args...] writes $work/egressd.toml: the
# script's example ($here/egressd.toml) pointed at the fake upstream, in
# enforce mode, logging queries to $work/queries.jsonl, adapted further by
# the sed arguments; then checks it.
enforcing_example() {
	local upstream=$1
	shift
	sed -e "s#^servers = .*#servers = [\"$upstream\"]#" \
		-e 's#^mode = "audit"#mode = "enforce"#' \
		-e "s#/var/log/egressd/queries.jsonl#$work/queries.jsonl#" \
		"$@" "${here:?set by the sourcing script}/egressd.toml" >"$work/egressd.toml"
	check_config "$work/egressd.toml"
}

start_in() { # namespace, stderr log, command...: runs in the background until exit
	local ns=$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" 2>"$log" &
	pids+=($!)
}

require_ready() { # namespace, url, what to say when it never answers, log to show
	local _
	for _ in $(seq 50); do
		ip netns exec "$1" curl -fs -m 1 -o /dev/null "$2" && return 0
		sleep 0.1
	done
	echo "FAIL: $3"
	cat "$4"
	exit 1
}

passed=0 failed=0
check() { # description, expected, actual
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1)); echo "ok   $1"
	else
		failed=$((failed + 1)); echo "FAIL $1: want $2, got $3"
	fi
}
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

# Probes, each from inside a namespace.
dig_short() { ip netns exec "$1" dig +time=2 +tries=1 +short "@$2" "$3"; } # namespace, server, name
answer() { dig_short "$@" | head -1; }                                     # the first answer only
status() { ip netns exec "$1" dig +time=2 +tries=1 "@$2" "$3" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
dig_rc() { ip netns exec "$1" dig +time=2 +tries=1 "@$2" "$3" >/dev/null; echo $?; } # 9: no reply
# set_has namespace set address: whether egressd's set holds address. The
# listing is read whole before it is searched: nft writes it in many small
# writes, and a grep -q that stops early would make it fail on a closed
# pipe, which pipefail reports as no.
set_has() {
	local out
	out=$(ip netns exec "$1" nft list set inet egressd "$2" 2>/dev/null) && grep -qw -- "$3" <<<"$out"
}
curl_rc() { ip netns exec "$1" curl -s -m 3 -o /dev/null "$2"; echo $?; }             # namespace, url; 28: timed out

# nats_server sets $nats to a nats-server binary: $NATS_SERVER (test/run
# builds one), else one built here from the module version go.mod requires.
# Debian's nats-server is too old for per-message TTLs.
nats_server() {
	nats=${NATS_SERVER:-}
	if [ -z "$nats" ]; then
		nats=$work/nats-server
		(cd "$root" && CGO_ENABLED=0 go build -o "$nats" github.com/nats-io/nats-server/v2) ||
			{ echo "FAIL: build nats-server"; exit 1; }
	fi
}
