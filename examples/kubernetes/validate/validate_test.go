package validate

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// manifestDir holds the example manifests this module checks.
const manifestDir = ".."

func loadAll(t *testing.T) []Document {
	t.Helper()
	docs, err := LoadDir(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestManifestsDecodeStrictly(t *testing.T) {
	docs := loadAll(t)
	kinds := map[string]int{}
	files := map[string]bool{}
	for _, d := range docs {
		kinds[d.Kind]++
		files[d.File] = true
		t.Logf("decoded %s", d)
	}
	for _, f := range []string{"sidecar.yaml", "configmap.yaml", "daemonset.yaml"} {
		if !files[f] {
			t.Errorf("%s: no documents decoded", f)
		}
	}
	for _, k := range []string{"Namespace", "ConfigMap", "Deployment", "DaemonSet"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

func TestStrictDecodingRejectsMistakes(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      DNSPOLICY
      containers:
        - name: app
          image: app:1
`
	tests := []struct {
		name    string
		doc     string
		wantErr string // "" means the document must decode
	}{
		{"valid deployment", strings.Replace(deployment, "DNSPOLICY", "dnsPolicy: None", 1), ""},
		{"misspelled pod field", strings.Replace(deployment, "DNSPOLICY", "dnsPolicyy: None", 1), `unknown field "spec.template.spec.dnsPolicyy"`},
		{"field at the wrong level", strings.Replace(deployment, "DNSPOLICY", "nameservers: [127.0.0.1]", 1), "unknown field"},
		{"wrong value type", strings.Replace(deployment, "DNSPOLICY", "shareProcessNamespace: sometimes", 1), "shareProcessNamespace"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: one\n  k: two\n", `key "k" already set`},
		{"misspelled kind", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata:\n  name: a\n", `no kind "Deploymnet"`},
		{"unknown apiVersion", "apiVersion: apps/v1beta2\nkind: Deployment\nmetadata:\n  name: a\n", "apps/v1beta2"},
		{"kind the examples do not use", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n", "unexpected kind"},
		{"no name", "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n", "without metadata.name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := DecodeStrict([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("decoded without error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSplitDocumentsSkipsCommentOnlyDocuments(t *testing.T) {
	in := "# header only\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n\n---\n# trailing note\n"
	docs, err := SplitDocuments(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || !strings.Contains(string(docs[0]), "kind: Namespace") {
		t.Fatalf("got %d documents %q, want the Namespace alone", len(docs), docs)
	}
}

func TestWorkloadInvariants(t *testing.T) {
	workloads := Workloads(loadAll(t))
	seen := map[bool]bool{} // by hostNetwork
	for _, w := range workloads {
		seen[w.Spec.HostNetwork] = true
		for _, p := range CheckWorkload(w) {
			t.Error(p)
		}
	}
	if !seen[false] || !seen[true] {
		t.Fatalf("want a sidecar workload and a hostNetwork node workload, got %d workloads", len(workloads))
	}
}

func TestConfigMapsAreExampleFiles(t *testing.T) {
	for _, d := range loadAll(t) {
		cm, ok := d.Object.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		if _, err := ParsePolicy(cm); err != nil {
			t.Error(err)
		}
		f, err := MatchingFile(manifestDir, cm)
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("ConfigMap %s/%s is %s", cm.Namespace, cm.Name, f)

		edited := cm.DeepCopy()
		edited.Data[ConfigKey] += "# local edit\n"
		if _, err := MatchingFile(manifestDir, edited); err == nil {
			t.Errorf("ConfigMap %s/%s: an edited copy still matched a file", cm.Namespace, cm.Name)
		}
	}
}

func TestParsePolicyRejectsBrokenTOML(t *testing.T) {
	cm := &corev1.ConfigMap{Data: map[string]string{ConfigKey: "[server\nlisten = 1\n"}}
	if _, err := ParsePolicy(cm); err == nil {
		t.Fatal("broken TOML parsed without error")
	}
	if _, err := ParsePolicy(&corev1.ConfigMap{}); err == nil {
		t.Fatal("ConfigMap without egressd.toml accepted")
	}
}

// Each case breaks one thing in a loaded example and expects the checks to
// name it, so a check that silently passes everything fails here.
func TestInvariantsCatchMistakes(t *testing.T) {
	container := func(s *corev1.PodSpec, name string) *corev1.Container {
		c, _ := findContainer(s, name)
		if c == nil {
			t.Fatalf("example has no container %q", name)
		}
		return c
	}
	policyEdit := func(w *Workload, old, new string) {
		for _, cm := range w.ConfigMaps {
			text := cm.Data[ConfigKey]
			if !strings.Contains(text, old) {
				t.Fatalf("ConfigMap %s has no %q to replace", cm.Name, old)
			}
			cm.Data[ConfigKey] = strings.Replace(text, old, new, 1)
		}
	}
	no, yes := false, true
	tests := []struct {
		name     string
		node     bool // the DaemonSet; otherwise the sidecar Deployment
		mutate   func(w *Workload)
		wantText string
	}{
		{"application adds NET_ADMIN", false, func(w *Workload) {
			c := container(w.Spec, "checkout")
			c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, "container checkout: must not add capability NET_ADMIN"},
		{"application runs as root", false, func(w *Workload) {
			container(w.Spec, "checkout").SecurityContext.RunAsNonRoot = &no
		}, "container checkout: must set runAsNonRoot"},
		{"reloader adds a capability", false, func(w *Workload) {
			container(w.Spec, ReloaderContainer).SecurityContext.Capabilities.Add = []corev1.Capability{"SYS_PTRACE"}
		}, "must not add capability SYS_PTRACE"},
		{"egressd keeps default capabilities", false, func(w *Workload) {
			container(w.Spec, EgressdContainer).SecurityContext.Capabilities.Drop = nil
		}, "capabilities.drop must contain ALL"},
		{"egressd privileged", true, func(w *Workload) {
			container(w.Spec, EgressdContainer).SecurityContext.Privileged = &yes
		}, "must not be privileged"},
		{"cluster DNS policy", false, func(w *Workload) {
			w.Spec.DNSPolicy = corev1.DNSClusterFirst
		}, `dnsPolicy "ClusterFirst", want None`},
		{"another nameserver", false, func(w *Workload) {
			w.Spec.DNSConfig.Nameservers = append(w.Spec.DNSConfig.Nameservers, "10.96.0.10")
		}, "nameservers must be exactly [127.0.0.1]"},
		{"egressd as a plain container", false, func(w *Workload) {
			container(w.Spec, EgressdContainer).RestartPolicy = nil
		}, "native sidecar"},
		{"no startup probe", false, func(w *Workload) {
			container(w.Spec, EgressdContainer).StartupProbe = nil
		}, "startupProbe"},
		{"no shared process namespace", false, func(w *Workload) {
			w.Spec.ShareProcessNamespace = &no
		}, "shareProcessNamespace"},
		{"restricted namespace", false, func(w *Workload) {
			w.Namespace.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
		}, `enforces pod security "restricted"`},
		{"config mounted with subPath", false, func(w *Workload) {
			c := container(w.Spec, EgressdContainer)
			c.VolumeMounts[0].SubPath = ConfigKey
		}, "without subPath"},
		{"sidecar on the forward hook", false, func(w *Workload) {
			policyEdit(w, `hooks   = ["output"]`, `hooks   = ["forward"]`)
		}, "firewall.hooks"},
		{"sidecar with client scope", false, func(w *Workload) {
			policyEdit(w, `scope   = "group"`, `scope   = "client"`)
		}, `firewall.scope "client" never matches`},
		{"sidecar forwarding to itself", false, func(w *Workload) {
			policyEdit(w, `servers = ["10.96.0.10:53"]`, `servers = ["127.0.0.1:53"]`)
		}, "is loopback"},
		{"sidecar group without the pod IP", false, func(w *Workload) {
			policyEdit(w, `clients = ["0.0.0.0/0", "::/0"]`, `clients = ["127.0.0.0/8"]`)
		}, "no group covers 0.0.0.0/0"},
		{"node probe on the node IP", true, func(w *Workload) {
			container(w.Spec, EgressdContainer).ReadinessProbe.HTTPGet.Host = ""
		}, "readinessProbe host"},
		{"node without the address init container", true, func(w *Workload) {
			w.Spec.InitContainers = nil
		}, `no "link-local-address" init container`},
		{"node on the output hook", true, func(w *Workload) {
			policyEdit(w, `hooks   = ["forward"]`, `hooks   = ["output"]`)
		}, `a node filters pod traffic with ["forward"]`},
		{"missing ConfigMap", true, func(w *Workload) {
			w.ConfigMaps = nil
		}, "is not defined in namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var target *Workload
			for _, w := range Workloads(loadAll(t)) {
				if w.Spec.HostNetwork == tt.node {
					target = &w
					break
				}
			}
			if target == nil {
				t.Fatal("example workload not found")
			}
			tt.mutate(target)
			got := CheckWorkload(*target)
			for _, p := range got {
				if strings.Contains(p, tt.wantText) {
					return
				}
			}
			t.Fatalf("no problem mentions %q; got %q", tt.wantText, got)
		})
	}
}
