package blocklists

import (
	"net/url"
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
	mt.ListDomains.WithLabelValues(c.name).Set(float64(c.cur.Load().block.count))
	for i, t := range last {
		if !t.IsZero() {
			mt.ListLastSuccess.WithLabelValues(c.name, c.sourceLabels[i]).Set(unixSeconds(t))
		}
	}
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixMilli()) / 1e3
}

// sourceLabel is how a source appears in metrics: a URL loses the
// password it may carry, since scrapes reach more people than the config.
func sourceLabel(src string) string {
	if !isURL(src) {
		return src
	}
	u, err := url.Parse(src)
	if err != nil {
		return src
	}
	return u.Redacted()
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
