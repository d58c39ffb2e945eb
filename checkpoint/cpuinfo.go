package checkpoint

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MaxCPUInfo bounds the cpuinfo image a peer may send (CRIU's is a few hundred bytes).
const MaxCPUInfo = 64 << 10

// CPUInfo describes this host's CPU the way CRIU will check it on restore: the bytes of the
// cpuinfo.img that `criu cpuinfo dump` writes.
func CPUInfo(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "ferry-cpuinfo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out, err := exec.CommandContext(ctx, "criu", "cpuinfo", "dump", "-D", dir, "-o", "cpuinfo.log").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("criu cpuinfo dump: %w: %s", err, cmp.Or(logErrorLines(filepath.Join(dir, "cpuinfo.log")), strings.TrimSpace(lastLines(out, 3))))
	}
	return os.ReadFile(filepath.Join(dir, "cpuinfo.img"))
}

// CheckCPUInfo runs `criu cpuinfo check` against another host's cpuinfo image: nil when a
// process dumped there can be restored on this CPU, else an error with CRIU's reasons.
func CheckCPUInfo(ctx context.Context, img []byte) error {
	if len(img) == 0 || len(img) > MaxCPUInfo {
		return fmt.Errorf("a cpuinfo image of %d bytes (want 1 to %d)", len(img), MaxCPUInfo)
	}
	dir, err := os.MkdirTemp("", "ferry-cpuinfo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "cpuinfo.img"), img, 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "criu", "cpuinfo", "check", "-D", dir, "-o", "cpuinfo.log").CombinedOutput()
	if err != nil {
		why := cmp.Or(logErrorLines(filepath.Join(dir, "cpuinfo.log")), strings.TrimSpace(lastLines(out, 3)))
		return fmt.Errorf("criu cpuinfo check: %w: %s", err, why)
	}
	return nil
}

// logErrorLines is CRIU's error lines in a log, joined, without the one every run logs where
// RLIMIT_NOFILE cannot be raised (harmless).
func logErrorLines(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Error (") && !strings.Contains(l, "RLIMIT_NOFILE") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	return strings.Join(errs, "; ")
}
