package validate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Names the examples give their containers; the rules below key on them.
const (
	EgressdContainer  = "egressd"
	ReloaderContainer = "egressd-reload"
	AddressContainer  = "link-local-address"
	ConfigMountPath   = "/etc/egressd"
	ConfigPath        = ConfigMountPath + "/" + ConfigKey
)

// containerRule is what one container may hold beyond the hardened
// default (non-root, no capabilities).
type containerRule struct {
	caps []corev1.Capability
	// root: Kubernetes does not raise a non-root user's effective
	// capabilities, so a container that needs one runs as uid 0. The
	// reloader needs uid 0 for another reason: signalling egressd without
	// CAP_KILL requires the same uid.
	root bool
}

var containerRules = map[string]containerRule{
	EgressdContainer:  {caps: []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"}, root: true},
	AddressContainer:  {caps: []corev1.Capability{"NET_ADMIN"}, root: true},
	ReloaderContainer: {root: true},
}

// Workload is a pod template with where it lives.
type Workload struct {
	Name      string
	Namespace *corev1.Namespace // nil when the manifests define none
	Spec      *corev1.PodSpec
	// ConfigMaps of the workload's namespace, by name.
	ConfigMaps map[string]*corev1.ConfigMap
}

// problems collects findings with a common prefix.
type problems struct {
	prefix string
	list   []string
}

func (p *problems) addf(format string, args ...any) {
	p.list = append(p.list, p.prefix+fmt.Sprintf(format, args...))
}

// CheckWorkload returns every invariant the workload breaks.
func CheckWorkload(w Workload) []string {
	p := &problems{prefix: w.Name + ": "}
	spec := w.Spec
	if sc := spec.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.addf("pod securityContext.seccompProfile must be RuntimeDefault")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		p.addf("automountServiceAccountToken must be false: egressd needs no API access")
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	needsPrivileged := spec.HostNetwork
	for i := range all {
		if checkContainer(p, &all[i]) {
			needsPrivileged = true
		}
	}
	if needsPrivileged {
		checkNamespaceAdmitsNetAdmin(p, w.Namespace)
	}

	egressd, isInit := findContainer(spec, EgressdContainer)
	if egressd == nil {
		p.addf("no %q container", EgressdContainer)
		return p.list
	}
	if !slices.Equal(egressd.Args, []string{"serve", "-config", ConfigPath}) {
		p.addf("egressd args %q, want serve -config %s", egressd.Args, ConfigPath)
	}
	cm := configMapFor(p, w, egressd)
	if reloader, _ := findContainer(spec, ReloaderContainer); reloader != nil {
		checkReloader(p, spec, reloader, egressd)
	}
	if cm == nil {
		return p.list
	}
	policy, err := ParsePolicy(cm)
	if err != nil {
		p.addf("%v", err)
		return p.list
	}
	if spec.HostNetwork {
		checkNode(p, spec, egressd, policy)
	} else {
		checkSidecar(p, spec, egressd, isInit, policy)
	}
	return p.list
}

// checkContainer checks the hardening every container shares and reports
// whether it adds NET_ADMIN.
func checkContainer(p *problems, c *corev1.Container) (netAdmin bool) {
	rule := containerRules[c.Name]
	if c.Image == "" {
		p.addf("container %s: no image", c.Name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		p.addf("container %s: needs cpu and memory requests and a memory limit", c.Name)
	}
	sc := c.SecurityContext
	if sc == nil {
		p.addf("container %s: no securityContext", c.Name)
		return false
	}
	if sc.Privileged != nil && *sc.Privileged {
		p.addf("container %s: must not be privileged", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.addf("container %s: allowPrivilegeEscalation must be false", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.addf("container %s: readOnlyRootFilesystem must be true", c.Name)
	}
	var add []corev1.Capability
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		p.addf("container %s: capabilities.drop must contain ALL", c.Name)
	}
	if sc.Capabilities != nil {
		add = sc.Capabilities.Add
	}
	for _, cap := range add {
		if !slices.Contains(rule.caps, cap) {
			p.addf("container %s: must not add capability %s", c.Name, cap)
		}
	}
	nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser != nil && *sc.RunAsUser != 0
	if !rule.root && !nonRoot {
		p.addf("container %s: must set runAsNonRoot: true and a non-zero runAsUser", c.Name)
	}
	return slices.Contains(add, "NET_ADMIN")
}

// checkNamespaceAdmitsNetAdmin: the baseline and restricted Pod Security
// profiles reject NET_ADMIN and hostNetwork, so such a pod needs a namespace
// that enforces "privileged", stated in the manifests rather than left to
// chance.
func checkNamespaceAdmitsNetAdmin(p *problems, ns *corev1.Namespace) {
	if ns == nil {
		p.addf("adds NET_ADMIN or uses hostNetwork but its Namespace is not defined with a pod-security label")
		return
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		p.addf("namespace %s enforces pod security %q; NET_ADMIN and hostNetwork need \"privileged\"", ns.Name, got)
	}
}

func findContainer(spec *corev1.PodSpec, name string) (c *corev1.Container, isInit bool) {
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == name {
			return &spec.InitContainers[i], true
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i], false
		}
	}
	return nil, false
}

// configMapFor finds the ConfigMap mounted read-only at /etc/egressd.
func configMapFor(p *problems, w Workload, c *corev1.Container) *corev1.ConfigMap {
	vol := mountedVolume(w.Spec, c, ConfigMountPath)
	if vol == nil {
		p.addf("container %s: no volume mounted at %s", c.Name, ConfigMountPath)
		return nil
	}
	if vol.ConfigMap == nil {
		p.addf("volume %s at %s is not a ConfigMap", vol.Name, ConfigMountPath)
		return nil
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == ConfigMountPath && (!m.ReadOnly || m.SubPath != "") {
			p.addf("container %s: mount %s read-only and without subPath (a subPath mount never sees ConfigMap updates)", c.Name, ConfigMountPath)
		}
	}
	cm := w.ConfigMaps[vol.ConfigMap.Name]
	if cm == nil {
		p.addf("ConfigMap %q is not defined in namespace %q", vol.ConfigMap.Name, namespaceName(w.Namespace))
	}
	return cm
}

func namespaceName(ns *corev1.Namespace) string {
	if ns == nil {
		return ""
	}
	return ns.Name
}

func mountedVolume(spec *corev1.PodSpec, c *corev1.Container, path string) *corev1.Volume {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == m.Name {
				return &spec.Volumes[i]
			}
		}
	}
	return nil
}

// checkReloader: the reloader must see egressd's process and the same file.
func checkReloader(p *problems, spec *corev1.PodSpec, reloader, egressd *corev1.Container) {
	if spec.ShareProcessNamespace == nil || !*spec.ShareProcessNamespace {
		p.addf("%s needs shareProcessNamespace: true to signal egressd", reloader.Name)
	}
	rv, ev := mountedVolume(spec, reloader, ConfigMountPath), mountedVolume(spec, egressd, ConfigMountPath)
	if rv == nil || ev == nil || rv.Name != ev.Name {
		p.addf("%s must mount egressd's config volume at %s", reloader.Name, ConfigMountPath)
	}
	script := strings.Join(append(append([]string{}, reloader.Command...), reloader.Args...), " ")
	for _, want := range []string{ConfigPath, "pidof egressd", "kill -HUP"} {
		if !strings.Contains(script, want) {
			p.addf("%s script does not contain %q", reloader.Name, want)
		}
	}
	if sc := reloader.SecurityContext; sc != nil && egressd.SecurityContext != nil {
		if !equalUID(sc.RunAsUser, egressd.SecurityContext.RunAsUser) {
			p.addf("%s must run as egressd's uid, or it may not signal it", reloader.Name)
		}
	}
}

func equalUID(a, b *int64) bool {
	return a != nil && b != nil && *a == *b
}

// checkSidecar: the pod asks egressd on loopback and nothing else, and
// egressd is in place before the application starts.
func checkSidecar(p *problems, spec *corev1.PodSpec, egressd *corev1.Container, isInit bool, policy *Policy) {
	if spec.DNSPolicy != corev1.DNSNone {
		p.addf("dnsPolicy %q, want None", spec.DNSPolicy)
	}
	if spec.DNSConfig == nil || !slices.Equal(spec.DNSConfig.Nameservers, []string{"127.0.0.1"}) {
		p.addf("dnsConfig.nameservers must be exactly [127.0.0.1]")
	}
	if !slices.Contains(policy.Server.Listen, "127.0.0.1:53") {
		p.addf("egressd must listen on 127.0.0.1:53, the pod's nameserver (listen = %q)", policy.Server.Listen)
	}
	if !isInit || egressd.RestartPolicy == nil || *egressd.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		p.addf("egressd must be a native sidecar (init container with restartPolicy: Always), so it is ready before the application starts")
	}
	if egressd.StartupProbe == nil {
		p.addf("egressd needs a startupProbe: the application starts once it succeeds")
	}
	if !slices.Equal(policy.Firewall.Hooks, []string{"output"}) {
		p.addf("firewall.hooks = %q, a pod filters its own traffic with [\"output\"]", policy.Firewall.Hooks)
	}
	if policy.Firewall.Scope == "client" {
		p.addf("firewall.scope \"client\" never matches in a pod: queries come from 127.0.0.1, connections from the pod IP")
	}
	if !policy.coversEveryIPv4() {
		p.addf("no group covers 0.0.0.0/0: the pod IP that connections leave from is not known in advance")
	}
	checkUpstreams(p, policy)
}

// checkNode: egressd on the node's network, reached on its listen address.
func checkNode(p *problems, spec *corev1.PodSpec, egressd *corev1.Container, policy *Policy) {
	if !slices.Equal(policy.Firewall.Hooks, []string{"forward"}) {
		p.addf("firewall.hooks = %q, a node filters pod traffic with [\"forward\"]", policy.Firewall.Hooks)
	}
	addrs := policy.listenAddrs()
	if len(addrs) != 1 {
		p.addf("node egressd should listen on exactly one address, got %q", policy.Server.Listen)
		return
	}
	ip := addrs[0].Addr().String()
	for name, probe := range map[string]*corev1.Probe{"startupProbe": egressd.StartupProbe, "readinessProbe": egressd.ReadinessProbe, "livenessProbe": egressd.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			p.addf("egressd %s must be an httpGet probe", name)
			continue
		}
		if probe.HTTPGet.Host != ip {
			p.addf("egressd %s host %q, want the listen address %s", name, probe.HTTPGet.Host, ip)
		}
	}
	if ml, err := netip.ParseAddrPort(policy.Metrics.Listen); err != nil || ml.Addr().String() != ip {
		p.addf("metrics.listen %q must be on the listen address %s, where the probes go", policy.Metrics.Listen, ip)
	}
	addr, _ := findContainer(spec, AddressContainer)
	if addr == nil {
		p.addf("no %q init container puts %s on the node", AddressContainer, ip)
	} else if !strings.Contains(strings.Join(addr.Command, " "), ip+"/32") {
		p.addf("%s does not add %s/32", AddressContainer, ip)
	}
	checkUpstreams(p, policy)
}

// checkUpstreams: egressd must not forward to itself.
func checkUpstreams(p *problems, policy *Policy) {
	if len(policy.Upstream.Servers) == 0 {
		p.addf("upstream.servers is empty: egressd would use resolv.conf, which in this pod names egressd itself")
	}
	for _, s := range policy.Upstream.Servers {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().IsLoopback() {
			p.addf("upstream %s is loopback: egressd would ask itself", s)
		}
	}
}
