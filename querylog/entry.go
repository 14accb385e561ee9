// Package querylog writes one JSON object per DNS query.
package querylog

import "time"

// Entry is one query log line. Field names are part of the user contract.
type Entry struct {
	Time     time.Time `json:"time"`
	Client   string    `json:"client"`
	Group    string    `json:"group"`
	QName    string    `json:"qname"`
	QType    string    `json:"qtype"`
	Decision string    `json:"decision"` // allow | deny | would_deny | refused
	Rule     string    `json:"rule,omitempty"`
	Source   string    `json:"source,omitempty"`
	Action   string    `json:"action,omitempty"`
	RCode    string    `json:"rcode"`
	Answers  []string  `json:"answers,omitempty"`
	TTL      uint32    `json:"ttl"`
	Cached   bool      `json:"cached"`
	Upstream string    `json:"upstream,omitempty"`
	// Transport is how the query came: udp, tcp, tls or https.
	Transport  string  `json:"transport,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	// Suppressed counts this client's lines of denied queries left out by
	// the per-client rate since its last line was written.
	Suppressed uint64 `json:"suppressed"`
}
