package testfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteThenLines(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
	}{
		{"empty", "", nil},
		{"one line without newline", "a", []string{"a"}},
		{"lines", "a\nb\n\nc\n", []string{"a", "b", "", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := Write(t, filepath.Join(t.TempDir(), "f"), tt.content)
			if got := Lines(t, path); !slices.Equal(got, tt.want) {
				t.Errorf("Lines = %q, want %q", got, tt.want)
			}
		})
	}
}

// Replace swaps the whole content and leaves no temporary file behind.
func TestReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	for _, content := range []string{"first\n", "second, longer\n", ""} {
		if err := Replace(path, content); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("%d files in the directory, want only the replaced one", len(entries))
		}
	}
	if err := Replace(filepath.Join(dir, "missing", "config"), "x"); err == nil {
		t.Error("Replace into a missing directory succeeded")
	}
}
