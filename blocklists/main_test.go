package blocklists

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the generated benchmark list, which is tens of
// megabytes, once the run is over.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchListPath != "" {
		os.RemoveAll(filepath.Dir(benchListPath))
	}
	os.Exit(code)
}
