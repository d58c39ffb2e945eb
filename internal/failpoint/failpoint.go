//go:build failpoints

// Package failpoint injects faults into test and lab builds (go build -tags failpoints). In
// product builds every Inject is an empty function.
//
// Faults are configured per host in /etc/ferry/failpoints, one per line: NAME ACTION, where
// ACTION is kill (SIGKILL this process), exit, error, corrupt (the caller damages the data it
// is handling: see ErrCorrupt), or sleep:DURATION. A line is consumed
// when it fires unless it ends with "always".
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Enabled reports whether this build honours failpoints.
const Enabled = true

// ErrCorrupt asks the caller to damage the data at hand (one byte) and go on.
var ErrCorrupt = errors.New("failpoint: corrupt")

// File holds the configured faults.
var File = "/etc/ferry/failpoints"

var mu sync.Mutex

// Inject fires the fault configured for name, if any.
func Inject(name string) error {
	mu.Lock()
	defer mu.Unlock()
	b, err := os.ReadFile(File)
	if err != nil {
		return nil
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != name {
			continue
		}
		if len(f) < 3 || f[2] != "always" {
			lines = append(lines[:i], lines[i+1:]...)
			_ = os.WriteFile(File, []byte(strings.Join(lines, "\n")), 0o644)
		}
		fmt.Fprintf(os.Stderr, "failpoint %s: %s\n", name, f[1])
		switch act := f[1]; {
		case act == "kill":
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		case act == "exit":
			os.Exit(3)
		case act == "error":
			return errors.New("failpoint " + name)
		case act == "corrupt":
			return ErrCorrupt
		case strings.HasPrefix(act, "sleep:"):
			d, _ := time.ParseDuration(strings.TrimPrefix(act, "sleep:"))
			time.Sleep(d)
		}
		return nil
	}
	return nil
}
