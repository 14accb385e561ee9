// Package gobuild builds a program of the module (or one it requires) once
// per test process, for tests that run it as a separate process: egressd
// itself in end-to-end tests, nats-server at the version go.mod names.
package gobuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Binary is one program to build. Pkg is a package path as `go build`
// takes it, relative to the module root ("./cmd/egressd") or a module
// path ("github.com/nats-io/nats-server/v2"); Env names a variable that,
// when set, is the path of a binary built elsewhere, used instead.
type Binary struct {
	Pkg string
	Env string

	once sync.Once
	dir  string
	path string
	err  error
}

// Path builds the binary the first time it is called and returns its
// path, or the path in Env when that is set.
func (b *Binary) Path() (string, error) {
	b.once.Do(func() {
		if bin := os.Getenv(b.Env); b.Env != "" && bin != "" {
			b.path = bin
			return
		}
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			b.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		if b.dir, b.err = os.MkdirTemp("", "gobuild-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, programName(b.Pkg))
		cmd := exec.Command("go", "build", "-o", b.path, b.Pkg)
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", b.Pkg, err, out)
		}
	})
	return b.path, b.err
}

// Remove deletes what Path built, if anything; call it from TestMain once
// the tests ran.
func (b *Binary) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// programName is the name go build gives pkg's binary: its last element,
// or the one before a major version suffix (".../nats-server/v2").
func programName(pkg string) string {
	name := filepath.Base(pkg)
	if len(name) > 1 && name[0] == 'v' && strings.Trim(name[1:], "0123456789") == "" {
		name = filepath.Base(filepath.Dir(pkg))
	}
	return name
}
