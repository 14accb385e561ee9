package validate

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Workloads returns the pod templates of every Deployment and DaemonSet in
// docs, each with its Namespace and the ConfigMaps of that namespace.
func Workloads(docs []Document) []Workload {
	namespaces := map[string]*corev1.Namespace{}
	configMaps := map[string]map[string]*corev1.ConfigMap{}
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *corev1.Namespace:
			namespaces[o.Name] = o
		case *corev1.ConfigMap:
			if configMaps[o.Namespace] == nil {
				configMaps[o.Namespace] = map[string]*corev1.ConfigMap{}
			}
			configMaps[o.Namespace][o.Name] = o
		}
	}
	var out []Workload
	for _, d := range docs {
		var spec *corev1.PodSpec
		switch o := d.Object.(type) {
		case *appsv1.Deployment:
			spec = &o.Spec.Template.Spec
		case *appsv1.DaemonSet:
			spec = &o.Spec.Template.Spec
		default:
			continue
		}
		ns := d.Object.GetNamespace()
		out = append(out, Workload{
			Name:       d.Kind + " " + ns + "/" + d.Object.GetName(),
			Namespace:  namespaces[ns],
			Spec:       spec,
			ConfigMaps: configMaps[ns],
		})
	}
	return out
}
