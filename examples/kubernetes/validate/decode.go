// Package validate checks egressd's example Kubernetes manifests: every
// document decodes strictly into the real API types, and the pod specs keep
// the invariants egressd relies on.
package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Document is one decoded YAML document of a manifest file.
type Document struct {
	File  string // base name of the manifest
	Index int    // position in the file, from 0
	Kind  string
	// Object is a *corev1.Namespace, *corev1.ConfigMap, *appsv1.Deployment
	// or *appsv1.DaemonSet.
	Object metav1.Object
}

func (d Document) String() string {
	name := d.Object.GetName()
	if ns := d.Object.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s#%d %s %s", d.File, d.Index, d.Kind, name)
}

// decoder decodes YAML strictly into the registered API types: unknown or
// misspelled fields and duplicate keys are errors that name the field path.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// DecodeStrict decodes one YAML document into its API type. Only the kinds
// the examples use are accepted, so a typo in kind or apiVersion cannot
// slip by either.
func DecodeStrict(doc []byte) (string, metav1.Object, error) {
	obj, gvk, err := decoder.Decode(doc, nil, nil)
	if err != nil {
		return "", nil, err
	}
	var m metav1.Object
	switch o := obj.(type) {
	case *corev1.Namespace:
		m = o
	case *corev1.ConfigMap:
		m = o
	case *appsv1.Deployment:
		m = o
	case *appsv1.DaemonSet:
		m = o
	default:
		return "", nil, fmt.Errorf("unexpected kind %s", gvk)
	}
	if m.GetName() == "" {
		return "", nil, fmt.Errorf("%s without metadata.name", gvk.Kind)
	}
	return gvk.Kind, m, nil
}

// SplitDocuments returns the non-empty YAML documents of a stream.
func SplitDocuments(r io.Reader) ([][]byte, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// stripComments drops whole-line comments, to tell a document that holds
// only a comment from one with content.
func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out = append(out, line...)
	}
	return out
}

// LoadDir decodes every document of every *.yaml file in dir.
func LoadDir(dir string) ([]Document, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Document
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs, err := SplitDocuments(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i, doc := range docs {
			kind, obj, err := DecodeStrict(doc)
			if err != nil {
				return nil, fmt.Errorf("%s document %d: %w", filepath.Base(f), i, err)
			}
			out = append(out, Document{File: filepath.Base(f), Index: i, Kind: kind, Object: obj})
		}
	}
	return out, nil
}
