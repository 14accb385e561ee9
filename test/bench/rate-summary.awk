# The RATE summary of test/bench/compare: per server, cache-hit and mixed
# CPU a query and p50/p99, peak RSS on mixed, and ratios to unbound's row
# of the same run, from compare's medians (tab-separated: server workload
# runs QPS CPU mean p50 p99 lost RSS upstream NOERROR load1). Run with
# awk -F '\t' -v rate=N -f rate-summary.awk medians.tsv
function ratio(a, b) { return (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
# get reads a column of server s on workload w, "-" when that was not run.
# Reading a[s, w] directly would create the element, and a cell tested
# with "in" afterwards would print as zeros.
function get(a, s, w) { return ((s, w) in a) ? a[s, w] : "-" }
function num(v, f) { return v == "-" || v == "" ? "-" : sprintf(f, v) }
function cell(s, w) {
	if (!((s, w) in cpu)) return "-"
	return sprintf("%s, %s, %s", num(cpu[s, w], "%.1f"), num(p50[s, w], "%.2f"), num(p99[s, w], "%.2f"))
}
NF >= 13 {
	if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
	cpu[$1, $2] = $5; p50[$1, $2] = $7; p99[$1, $2] = $8
	if ($2 == "mixed") rss[$1, $2] = $10
}
END {
	if (n == 0) exit
	printf "At %d queries/s offered, medians of each column:\n\n", rate
	print "| server | cache-hit: CPU µs/query, p50 ms, p99 ms | mixed (90% hits): CPU µs/query, p50 ms, p99 ms | peak RSS MiB (mixed) | to unbound: hit CPU, hit p99, mixed CPU, mixed p99, RSS |"
	print "|---|---|---|---|---|"
	for (i = 1; i <= n; i++) {
		s = order[i]
		r = "-"
		if (s != "unbound" && ("unbound" in seen))
			r = ratio(get(cpu, s, "cache-hit"), get(cpu, "unbound", "cache-hit")) ", " ratio(get(p99, s, "cache-hit"), get(p99, "unbound", "cache-hit")) ", " \
				ratio(get(cpu, s, "mixed"), get(cpu, "unbound", "mixed")) ", " ratio(get(p99, s, "mixed"), get(p99, "unbound", "mixed")) ", " \
				ratio(get(rss, s, "mixed"), get(rss, "unbound", "mixed"))
		name = s == "egressd" ? "egressd (backend none)" : s == "egressd+nft" ? "egressd (nftables)" : \
			s == "before" ? "egressd before (backend none)" : s == "before+nft" ? "egressd before (nftables)" : s
		printf "| %s | %s | %s | %s | %s |\n", name, cell(s, "cache-hit"), cell(s, "mixed"), num(get(rss, s, "mixed"), "%.0f"), r
	}
	print ""
}
