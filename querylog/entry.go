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
	// Drop explains a packet the firewall dropped; set only on lines with
	// decision "drop", which have no DNS fields but client, group, qname
	// (the name that pointed at the destination, if any) and rule.
	Drop *Drop `json:"drop,omitempty"`
}

// DecisionDrop is the decision of a line about a dropped packet.
const DecisionDrop = "drop"

// Drop is a dropped packet and why it was dropped. Every field is always
// written in a drop line.
type Drop struct {
	Destination string `json:"destination"`
	Protocol    string `json:"protocol"`
	Port        uint16 `json:"port"`
	// Reason is one of dropjoin's reasons.
	Reason string `json:"reason"`
	// ResolvedBy is the client the address was resolved for instead.
	ResolvedBy string `json:"resolved_by"`
	// ApprovedPorts are the ports the answer approved (reason other_ports).
	ApprovedPorts []string `json:"approved_ports"`
	// AnswerTime and Expiry are those of the answer the reason refers to.
	AnswerTime string `json:"answer_time"`
	Expiry     string `json:"expiry"`
}
