package blocklists

import (
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// The sample category lists ship inside the binary, so the embedded
// default config works wherever egressd runs: source "builtin:malware.txt".
//
//go:embed *.txt
var builtinLists embed.FS

const builtinPrefix = "builtin:"

func isBuiltin(src string) bool { return strings.HasPrefix(src, builtinPrefix) }

// checkBuiltin reports whether a builtin: source names a shipped list.
func checkBuiltin(src string) error {
	name := strings.TrimPrefix(src, builtinPrefix)
	if _, err := fs.Stat(builtinLists, name); err != nil {
		entries, _ := fs.Glob(builtinLists, "*.txt")
		return fmt.Errorf("source %q: no built-in list %q (have %s)", src, name, strings.Join(entries, ", "))
	}
	return nil
}

// openSource opens a local file or a built-in list.
func openSource(path string) (io.ReadCloser, error) {
	if isBuiltin(path) {
		return builtinLists.Open(strings.TrimPrefix(path, builtinPrefix))
	}
	return os.Open(path)
}
