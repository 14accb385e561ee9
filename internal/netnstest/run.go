package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// CommandTimeout bounds every external command run through this package.
const CommandTimeout = 20 * time.Second

// Run executes a command and returns its combined output; the error
// carries the command line and output so callers can report it as is.
func Run(name string, args ...string) (string, error) {
	return RunInput(nil, name, args...)
}

// RunInput is Run with stdin fed from the given bytes (none when nil).
func RunInput(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
