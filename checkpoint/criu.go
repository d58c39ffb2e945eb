// Package checkpoint drives CRIU (through go-criu) for containerd/runc containers.
//
// Why not containerd's checkpoint API: containerd's runc shim cannot pass CRIU's page server,
// pre-dump (iterative) or lazy-pages options, which the memory strategies need, and it forwards
// no --tcp-established on restore. So ferry dumps the task's process tree itself with go-criu,
// producing images exactly as `runc checkpoint` would (same external-mount keys, the same
// descriptors.json), and restores through containerd (NewTask with the image path), which runs
// `runc restore`: the restored task is then owned by a shim like any other. docs/criu.md has
// the details.
package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	criu "github.com/checkpoint-restore/go-criu/v7"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// MinVersion is the oldest CRIU ferry drives (4.0: the first that works on current kernels
// with the options ferry uses).
const MinVersion = 40000

// Version returns CRIU's version as a number (4.1.1 → 40101).
func Version(ctx context.Context) (int, error) {
	if _, err := exec.LookPath("criu"); err != nil {
		return 0, fmt.Errorf("criu is not installed: %w", errors.Join(err, errdefs.ErrUnsupported))
	}
	out, err := exec.CommandContext(ctx, "criu", "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("criu --version: %w", err)
	}
	return parseVersion(string(out))
}

var versionRE = regexp.MustCompile(`Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

func parseVersion(out string) (int, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("cannot read CRIU's version from %q", strings.TrimSpace(out))
	}
	v := 0
	for _, p := range m[1:] {
		n, _ := strconv.Atoi(p)
		v = v*100 + n
	}
	return v, nil
}

// FormatVersion prints 40101 as 4.1.1.
func FormatVersion(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

// Check runs `criu check` and returns "" when CRIU works on this kernel, else its complaint.
func Check(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "criu", "check").CombinedOutput()
	if err != nil {
		return strings.TrimSpace(lastLines(out, 3))
	}
	return ""
}

// Feature reports whether `criu check --feature NAME` passes (e.g. mem_dirty_track, uffd).
func Feature(ctx context.Context, name string) bool {
	return exec.CommandContext(ctx, "criu", "check", "--feature", name).Run() == nil
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// newCriu returns a go-criu handle (criu is looked up on PATH, as runc does).
func newCriu() *criu.Criu { return criu.MakeCriu() }

// lazyPipePages is CRIU's PIPE_MAX_SIZE on x86-64 in pages ((1 << 3) * 4096 / 40): the pipe a
// lazy dump's page server grows to serve pages.
const lazyPipePages = 819

// LazyDumpProblem says why a lazy (post-copy) dump would fail here, "" if it can run. CRIU's
// lazy page server enlarges a pipe beyond fs.pipe-max-size, which needs CAP_SYS_RESOURCE; CRIU
// 4.1 ignores the failure and breaks when the first page is asked for.
func LazyDumpProblem() string {
	if HasCapSysResource() {
		return ""
	}
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		return "cannot read fs.pipe-max-size: " + err.Error()
	}
	max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if max >= lazyPipePages*4096 {
		return ""
	}
	return fmt.Sprintf("post-copy needs CAP_SYS_RESOURCE or fs.pipe-max-size ≥ %d (it is %d): run sysctl -w fs.pipe-max-size=4194304", lazyPipePages*4096, max)
}

// HasCapSysResource says whether this process has CAP_SYS_RESOURCE in its effective set: CRIU
// needs it to dump another uid's tasks (prlimit) and for post-copy's large pipes.
func HasCapSysResource() bool { return hasCap(capSysResource) }

func hasCap(bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps>>bit&1 == 1
		}
	}
	return false
}
