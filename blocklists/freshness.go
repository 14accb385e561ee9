package blocklists

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// finishRefresh records the outcome of one refresh of c in its status and
// metrics. success holds, per source, when it was last fetched and parsed
// or confirmed unchanged into the lists now in use (zero: not this time).
func (m *Manager) finishRefresh(c *category, result string, err error, success []time.Time) {
	now := time.Now()
	c.statusMu.Lock()
	c.lastResult, c.lastErr = result, ""
	if err != nil {
		c.lastErr = err.Error()
	}
	c.checked = now
	if result == resultOK || result == resultUnchanged {
		c.succeeded = now
	}
	for i, t := range success {
		if t.After(c.sourceSuccess[i]) {
			c.sourceSuccess[i] = t
		}
	}
	last := append([]time.Time(nil), c.sourceSuccess...)
	c.statusMu.Unlock()

	mt := m.opts.Metrics
	if mt == nil {
		return
	}
	mt.ListRefreshes.WithLabelValues(c.name, result).Inc()
	cur := c.cur.Load()
	mt.ListDomains.WithLabelValues(c.name).Set(float64(cur.block.count))
	mt.ListMappedBytes.WithLabelValues(c.name).Set(float64(cur.block.mappedBytes() + cur.except.mappedBytes()))
	for i, t := range last {
		if !t.IsZero() {
			mt.ListLastSuccess.WithLabelValues(c.name, c.sourceLabels[i]).Set(unixSeconds(t))
		}
	}
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixMilli()) / 1e3
}

// sourceLabel is how a source appears in metrics and logs: a URL loses
// the password it may carry and the values of its query string (API
// tokens travel there as often), and its fragment, since scrapes reach
// more people than the config. Parameter names stay, so the label still
// tells the sources apart, and its length is bounded.
func sourceLabel(src string) string {
	label := src
	if isURL(src) {
		if u, err := url.Parse(src); err == nil {
			u.Fragment, u.RawFragment = "", ""
			u.RawQuery = redactQuery(u.RawQuery)
			label = u.Redacted()
		}
	}
	if len(label) > maxSourceLabel {
		// Cut, with a digest of the whole source so that two long
		// sources with the same beginning keep different labels.
		sum := sha256.Sum256([]byte(src))
		label = label[:maxSourceLabel-len("...")-8] + "..." + hex.EncodeToString(sum[:4])
	}
	return label
}

// redactQuery replaces every value of a raw query string with "xxxxx",
// and every part without a name too.
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if p == "" {
			continue
		}
		if name, _, ok := strings.Cut(p, "="); ok {
			parts[i] = name + "=xxxxx"
		} else {
			parts[i] = "xxxxx"
		}
	}
	return strings.Join(parts, "&")
}

// forgetOtherSources drops last-success series of categories and sources
// this Manager does not have, left behind by the Manager a reload
// replaced; they would otherwise look staler and staler.
func (m *Manager) forgetOtherSources() {
	mt := m.opts.Metrics
	if mt == nil {
		return
	}
	current := map[[2]string]bool{}
	for _, c := range m.cats {
		for _, l := range c.sourceLabels {
			current[[2]string{c.name, l}] = true
		}
	}
	ch := make(chan prometheus.Metric)
	go func() {
		mt.ListLastSuccess.Collect(ch)
		close(ch)
	}()
	var stale [][2]string
	for metric := range ch {
		var pb dto.Metric
		if metric.Write(&pb) != nil {
			continue
		}
		var key [2]string
		for _, lp := range pb.GetLabel() {
			switch lp.GetName() {
			case "category":
				key[0] = lp.GetValue()
			case "source":
				key[1] = lp.GetValue()
			}
		}
		if !current[key] {
			stale = append(stale, key)
		}
	}
	for _, k := range stale {
		mt.ListLastSuccess.DeleteLabelValues(k[0], k[1])
	}
}

// maxSourceLabel bounds the length of a source's metric label.
const maxSourceLabel = 160
