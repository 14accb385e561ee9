package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Apply says when a changed key takes effect.
type Apply int

const (
	// OnReload keys are applied by SIGHUP, atomically with every other
	// reloadable key.
	OnReload Apply = iota
	// OnRestart keys keep their running value on SIGHUP; the reload names
	// each one that changed.
	OnRestart
)

func (a Apply) String() string {
	if a == OnRestart {
		return "restart"
	}
	return "reload"
}

// Keys classifies every key of the file. Keys of a [categories.NAME] table
// are written categories.*.KEY, [hosts] entries hosts.*, and keys of an
// array of tables ([[group]], [[upstream.zone]]) group[].KEY.
//
// A key belongs to OnRestart when the running process cannot take it over
// without a new socket, a new process-wide resource or a second copy of
// something large: listeners, upstream clients (their sockets carry the
// firewall mark), the cache's size, the table's identity, the query log's
// file, the metrics listener, the dnstap output and the fleet's NATS
// connection.
var Keys = map[string]Apply{
	"server.listen":                   OnRestart,
	"server.clients":                  OnReload,
	"server.mode":                     OnReload,
	"server.rate_limit":               OnReload,
	"server.rate_burst":               OnReload,
	"server.rate_limit_ipv4_prefix":   OnRestart,
	"server.rate_limit_ipv6_prefix":   OnRestart,
	"server.max_in_flight_per_client": OnRestart,
	"server.memory_limit":             OnRestart,
	"server.tcp_idle_timeout":         OnRestart,
	"server.tcp_max_conns":            OnRestart,
	"server.tcp_max_conns_per_client": OnRestart,
	"server.doh_canary":               OnReload,
	"server.tls_listen":               OnRestart,
	"server.https_listen":             OnRestart,
	"server.https_path":               OnRestart,
	"server.tls_cert":                 OnReload,
	"server.tls_key":                  OnReload,
	"server.trusted_proxies":          OnReload,
	"server.nat64_prefixes":           OnRestart,
	"server.state_dir":                OnRestart,

	"upstream.servers":        OnRestart,
	"upstream.timeout":        OnRestart,
	"upstream.bootstrap":      OnRestart,
	"upstream.zone[].name":    OnRestart,
	"upstream.zone[].servers": OnRestart,

	"cache.size":        OnRestart,
	"cache.max_bytes":   OnRestart,
	"cache.max_ttl":     OnReload,
	"cache.serve_stale": OnReload,

	"firewall.backend":          OnRestart,
	"firewall.fallback_to_none": OnRestart,
	"firewall.table":            OnRestart,
	"firewall.hooks":            OnReload,
	"firewall.grace":            OnReload,
	"firewall.max_ttl":          OnReload,
	"firewall.scope":            OnReload,
	"firewall.fail_open":        OnReload,
	"firewall.mark":             OnRestart,
	"firewall.remove_on_exit":   OnReload,

	"firewall.inbound":                  OnReload,
	"firewall.unlisted_sources":         OnReload,
	"firewall.drop_events":              OnRestart,
	"firewall.nflog_group":              OnRestart,
	"firewall.drop_events_rate":         OnReload,
	"firewall.drop_events_burst":        OnReload,
	"firewall.recent_answers":           OnRestart,
	"firewall.recent_answers_age":       OnRestart,
	"firewall.max_addresses_per_answer": OnReload,
	"firewall.max_elements_per_set":     OnReload,
	"firewall.max_elements_per_client":  OnReload,
	"firewall.gc_interval":              OnReload,

	"log.queries":                OnRestart,
	"log.sample_allowed":         OnRestart,
	"log.max_size":               OnRestart,
	"log.max_files":              OnRestart,
	"log.denied_per_client_rate": OnRestart,
	"log.level":                  OnReload,

	"metrics.listen":   OnRestart,
	"metrics.profiles": OnRestart,

	"dnstap.output":           OnRestart,
	"dnstap.identity":         OnRestart,
	"dnstap.version":          OnRestart,
	"dnstap.queue":            OnRestart,
	"dnstap.client_queries":   OnRestart,
	"dnstap.client_responses": OnRestart,
	"dnstap.forwarder":        OnRestart,

	// The fleet's connection, roles and timeouts are fixed for the life
	// of the NATS connection and its subscriptions.
	"fleet.servers":         OnRestart,
	"fleet.node":            OnRestart,
	"fleet.publish":         OnRestart,
	"fleet.enforce":         OnRestart,
	"fleet.credentials":     OnRestart,
	"fleet.tls_ca":          OnRestart,
	"fleet.tls_cert":        OnRestart,
	"fleet.tls_key":         OnRestart,
	"fleet.subject_prefix":  OnRestart,
	"fleet.stream":          OnRestart,
	"fleet.publish_timeout": OnRestart,
	"fleet.queue":           OnRestart,
	"fleet.confirm":         OnRestart,
	"fleet.confirm_timeout": OnRestart,

	"categories.*.sources": OnReload,
	"categories.*.refresh": OnReload,
	"categories.*.match":   OnReload,
	"categories.*.format":  OnReload,

	"hosts.*": OnReload,

	"group[].name":                  OnReload,
	"group[].clients":               OnReload,
	"group[].allow":                 OnReload,
	"group[].deny":                  OnReload,
	"group[].allow_categories":      OnReload,
	"group[].deny_categories":       OnReload,
	"group[].default":               OnReload,
	"group[].action":                OnReload,
	"group[].sinkhole":              OnReload,
	"group[].mode":                  OnReload,
	"group[].allow_private_answers": OnReload,
	"group[].deny_addresses":        OnReload,
}

// Change is one key whose value differs between two configs.
type Change struct {
	Key     string // the key as written, e.g. group[2].allow or categories.malware.sources
	Pattern string // its entry in Keys
	Apply   Apply
}

// Changes lists every key whose value differs between old and cur, in key
// order. A key present in only one of them counts as changed.
func Changes(old, cur *Config) []Change {
	a, b := map[string]leaf{}, map[string]leaf{}
	walk(reflect.ValueOf(old).Elem(), "", "", a)
	walk(reflect.ValueOf(cur).Elem(), "", "", b)
	var out []Change
	for k, la := range a {
		lb, ok := b[k]
		if !ok || la.value != lb.value {
			out = append(out, Change{Key: k, Pattern: la.pattern, Apply: Keys[la.pattern]})
		}
	}
	for k, lb := range b {
		if _, ok := a[k]; !ok {
			out = append(out, Change{Key: k, Pattern: lb.pattern, Apply: Keys[lb.pattern]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// RestartOnly is the changed keys that SIGHUP does not apply.
func RestartOnly(old, cur *Config) []string {
	var out []string
	for _, c := range Changes(old, cur) {
		if c.Apply == OnRestart {
			out = append(out, c.Key)
		}
	}
	return out
}

type leaf struct {
	pattern string
	value   string
}

// walk records every key of v (a Config or a part of it) that the file can
// set, under its written path and its pattern in Keys.
func walk(v reflect.Value, path, pattern string, out map[string]leaf) {
	join := func(base, name string) string {
		if base == "" {
			return name
		}
		return base + "." + name
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			out[path] = leaf{pattern, "<unset>"}
			return
		}
		if v.Elem().Kind() != reflect.Struct {
			out[path] = leaf{pattern, fmt.Sprint(v.Elem().Interface())}
			return
		}
		walk(v.Elem(), path, pattern, out)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			walk(v.Field(i), join(path, name), join(pattern, name), out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			walk(v.MapIndex(k), join(path, k.String()), join(pattern, "*"), out)
		}
	case reflect.Slice:
		if elem := v.Type().Elem(); elem.Kind() == reflect.Pointer && elem.Elem().Kind() == reflect.Struct {
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i), pattern+"[]", out)
			}
			return
		}
		out[path] = leaf{pattern, fmt.Sprint(v.Interface())}
	default:
		out[path] = leaf{pattern, fmt.Sprint(v.Interface())}
	}
}

// patterns lists the pattern of every key the Config type can hold.
func patterns(t reflect.Type, pattern string, out map[string]bool) {
	join := func(name string) string {
		if pattern == "" {
			return name
		}
		return pattern + "." + name
	}
	switch t.Kind() {
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Struct {
			patterns(t.Elem(), pattern, out)
			return
		}
		out[pattern] = true
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			patterns(t.Field(i).Type, join(name), out)
		}
	case reflect.Map:
		patterns(t.Elem(), join("*"), out)
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Pointer && e.Elem().Kind() == reflect.Struct {
			patterns(e, pattern+"[]", out)
			return
		}
		out[pattern] = true
	default:
		out[pattern] = true
	}
}
