// Package testfile writes and reads the files tests and test tools hand
// to egressd or get back from it: configs, lists, logs.
package testfile

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
)

// Write stores content at path (mode 0644) and returns path; a failure
// fails the test.
func Write(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Lines returns the lines of path without their newlines; a failure fails
// the test.
func Lines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// Replace stores content at path atomically: it is written to a temporary
// file in the same directory and renamed over path, so a reader (egressd
// reloading its config, a poller reading a counter) never sees half of it.
func Replace(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
