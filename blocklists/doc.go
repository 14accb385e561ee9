// Package blocklists loads category domain lists (files or http(s) URLs in
// plain, hosts, AdBlock or RPZ format), keeps them fresh, and answers
// "does category C contain this name or one of its parents" without
// allocating and without ever blocking a query.
//
// Lists are stored as 62-bit hashes of their normalized names in open
// addressing tables, about 24 bytes per domain including the line number
// kept for explain. Two different names sharing a 62-bit hash would make
// one match for the other; with a few million entries the chance of any
// single lookup hitting such a false positive is below 1e-12, which egressd
// accepts in exchange for not storing the names themselves.
package blocklists
