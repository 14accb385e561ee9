package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// monitor scrapes egressd's own gauges through the run: the baseline
// after warm-up, the peak RSS and the last values.
type monitor struct {
	scraper *scraper
	start   time.Time
	warmup  time.Duration

	mu                sync.Mutex
	preGoroutines     float64 // at the first scrape, before the load
	havePre           bool
	baseGoroutines    float64
	baseRSS           float64
	haveBase          bool
	peakRSS           float64
	peakMapped        float64 // egressd_list_mapped_bytes: category tables outside the Go heap
	peakGoroutines    float64
	lastGoroutines    float64
	lastRSS           float64
	scrapes, failures int
	lastErr           string
	firstCPU, lastCPU float64 // egressd's CPU seconds at the first and last scrape
	haveCPU           bool
}

const (
	seriesGoroutines = "go_goroutines"
	seriesRSS        = "process_resident_memory_bytes"
	seriesCPU        = "process_cpu_seconds_total"
	seriesMapped     = "egressd_list_mapped_bytes"
)

// sample scrapes once and folds the values in.
func (m *monitor) sample() error {
	s, err := m.scraper.scrape()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scrapes++
	if err != nil {
		m.failures++
		m.lastErr = err.Error()
		return err
	}
	g, okG := s.get(seriesGoroutines)
	rss, okR := s.get(seriesRSS)
	if !okG || !okR {
		m.failures++
		m.lastErr = fmt.Sprintf("%s or %s missing from /metrics", seriesGoroutines, seriesRSS)
		return fmt.Errorf("%s", m.lastErr)
	}
	m.lastGoroutines, m.lastRSS = g, rss
	if cpu, ok := s.get(seriesCPU); ok {
		if !m.haveCPU {
			m.firstCPU, m.haveCPU = cpu, true
		}
		m.lastCPU = cpu
	}
	if !m.havePre {
		m.preGoroutines, m.havePre = g, true
	}
	m.peakRSS = max(m.peakRSS, rss)
	if mapped, ok := s.get(seriesMapped); ok {
		m.peakMapped = max(m.peakMapped, mapped)
	}
	m.peakGoroutines = max(m.peakGoroutines, g)
	if !m.haveBase && time.Since(m.start) >= m.warmup {
		m.baseGoroutines, m.baseRSS, m.haveBase = g, rss, true
	}
	return nil
}

// loop samples every interval and prints a progress line every report
// interval until ctx ends.
func (m *monitor) loop(ctx context.Context, interval, report time.Duration, progress func() string) {
	lastReport := time.Now()
	for sleepCtx(ctx, interval) {
		_ = m.sample()
		if time.Since(lastReport) >= report {
			lastReport = time.Now()
			m.mu.Lock()
			line := fmt.Sprintf("  t=%-4s rss=%.1fMiB goroutines=%.0f", time.Since(m.start).Round(time.Second), m.lastRSS/(1<<20), m.lastGoroutines)
			m.mu.Unlock()
			fmt.Println(line + " " + progress())
		}
	}
}

// settle samples every half second until egressd's goroutines are within
// bound or deadline passes, and returns how long it waited and the last
// sample's error. Waiting instead of sampling once is what lets the bound
// leave out goroutines egressd only keeps for a while (idle UDP workers);
// a busy machine makes the wait longer, never the verdict different.
func (m *monitor) settle(bound float64, deadline time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		err := m.sample()
		m.mu.Lock()
		within := err == nil && m.lastGoroutines <= bound
		m.mu.Unlock()
		if within || time.Since(start) >= deadline {
			return time.Since(start).Round(100 * time.Millisecond), err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type monitorFigures struct {
	havePre                 bool
	preGoroutines           float64
	settled                 time.Duration // waited after the load for the end figures
	haveBase                bool
	baseGoroutines, baseRSS float64
	peakRSS, peakGoroutines float64
	peakMapped              float64 // egressd_list_mapped_bytes
	lastGoroutines, lastRSS float64
	scrapes, failures       int
	lastErr                 string
	cpuSeconds              float64 // egressd's CPU time between the first and last scrape
}

func (m *monitor) figures() monitorFigures {
	m.mu.Lock()
	defer m.mu.Unlock()
	return monitorFigures{havePre: m.havePre, preGoroutines: m.preGoroutines, haveBase: m.haveBase,
		baseGoroutines: m.baseGoroutines, baseRSS: m.baseRSS, peakRSS: m.peakRSS, peakGoroutines: m.peakGoroutines,
		peakMapped: m.peakMapped, lastGoroutines: m.lastGoroutines, lastRSS: m.lastRSS, scrapes: m.scrapes,
		failures: m.failures, lastErr: m.lastErr, cpuSeconds: m.lastCPU - m.firstCPU}
}
