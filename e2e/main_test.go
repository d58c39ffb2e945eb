// Package e2e runs ferry end to end on the lab: real hosts (namespaces), real sshd, containerd,
// runc, CRIU and rsync. It needs root; it builds the binaries with failpoints (test build) and
// brings a lab up for the whole package, then down, checking that nothing remains.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	// labMountPoints are the paths each lab host sees privately; ferry-lab creates the missing
	// ones on the machine and must remove them again.
	labMountPoints = []string{"/var/lib/containerd", "/run/containerd", "/var/lib/ferry", "/run/ferry", "/etc/ferry", "/root/.ssh", "/run/sshd", "/run/zfs", "/run/lock/zfs"}
	existedBefore  = map[string]bool{}
	pipeMaxBefore  []byte
	skipReason     string // set when the suite cannot run here, printed by every test
	binDir         string
	repoRoot       string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	binDir = filepath.Join(repoRoot, "bin", "e2e")
	// FERRY_E2E_BIN names binaries built beforehand (in a VM, building would take long).
	prebuilt := os.Getenv("FERRY_E2E_BIN")
	if prebuilt != "" {
		binDir = prebuilt
		if !filepath.IsAbs(binDir) {
			binDir = filepath.Join(repoRoot, binDir)
		}
	}
	skipReason = prerequisites()
	if skipReason == "" {
		if prebuilt == "" {
			if err := build(); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: build:", err)
				os.Exit(1)
			}
		}
		_, _ = labRun("down") // leftovers of an interrupted run
		for _, p := range labMountPoints {
			if _, err := os.Stat(p); err == nil {
				existedBefore[p] = true
			}
		}
		pipeMaxBefore, _ = os.ReadFile("/proc/sys/fs/pipe-max-size")
		up := []string{"up", "--zfs"}
		if os.Getenv("FERRY_E2E_ZFS") == "0" { // the VM's pre-copy run needs no pool
			up = up[:1]
		}
		if out, err := labRun(up...); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: ferry-lab up: %v\n%s", err, out)
			_, _ = labRun("down")
			os.Exit(1)
		}
	}
	code := m.Run()
	if skipReason == "" {
		if out, err := labRun("down"); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: ferry-lab down: %v\n%s", err, out)
			code = 1
		}
	}
	os.Exit(code)
}

// prerequisites returns why the suite cannot run here ("" if it can).
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "needs root (namespaces, cgroups, containerd, CRIU): run make test as root"
	}
	for _, c := range []string{"criu", "containerd", "runc", "rsync", "/usr/sbin/sshd", "nsenter", "ip"} {
		if _, err := exec.LookPath(c); err != nil {
			return c + " is not installed: run make deps (make test does)"
		}
	}
	if out, err := exec.Command("criu", "check").CombinedOutput(); err != nil {
		return "criu check fails on this kernel: " + strings.TrimSpace(string(out))
	}
	return ""
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// build makes the test binaries: the product with failpoints compiled in, and the lab.
func build() error {
	cmds := [][]string{
		{goBin(), "build", "-tags", "failpoints", "-o", binDir + "/", "./cmd/ferry", "./cmd/ferry-receiver", "./cmd/ferry-lab"},
		{goBin(), "build", "-o", filepath.Join(binDir, "ferry-workload"), "./lab/workload"},
	}
	for _, c := range cmds {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

func labRun(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "ferry-lab"), args...).CombinedOutput()
	return string(out), err
}

func requireLab(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// lab runs ferry-lab with args and returns its output and exit status.
func lab(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "ferry-lab"), args...)
	// Killing ferry-lab does not close the pipes its children (ferry in a lab host) hold: without
	// this, Run waited for them forever and a hang never reached the report below.
	cmd.WaitDelay = 10 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	switch {
	case err != nil && ctx.Err() != nil:
		// A hang: show where everything stood, for the next person.
		t.Fatalf("ferry-lab %v did not end within 5 minutes\nstdout: %s\nstderr: %s\nprocesses:\n%s", args, o.String(), e.String(), processes())
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("ferry-lab %v: %v", args, err)
	}
	if !t.Skipped() { // a skipped test's cleanup would bury its reason in the summary
		t.Logf("ferry-lab %s → exit %d", strings.Join(args, " "), r.code)
	}
	return r
}

// processes describes every process for a hang report: the tree (ps, under a timeout: it
// reads each command line, which waits on a task that holds its memory map), then the kernel
// stack of each task blocked in the kernel (state D), read from /proc without ps.
func processes() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ps", "-eo", "pid,ppid,stat,etimes,wchan:24,args", "--forest")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var b strings.Builder
	b.Write(out)
	if err != nil {
		fmt.Fprintf(&b, "(ps: %v)\n", err)
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		raw, err := os.ReadFile(st)
		s := string(raw)
		i := strings.LastIndexByte(s, ')')
		if err != nil || i < 0 || i+3 > len(s) || s[i+2] != 'D' {
			continue
		}
		dir := filepath.Dir(st)
		stack, _ := os.ReadFile(filepath.Join(dir, "stack"))
		fmt.Fprintf(&b, "blocked: %s\n%s", s[:i+1], stack)
	}
	return b.String()
}

// mustLab runs ferry-lab and fails the test unless it exits 0.
func mustLab(t *testing.T, args ...string) string {
	t.Helper()
	r := lab(t, args...)
	if r.code != 0 {
		t.Fatalf("ferry-lab %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// report is the part of ferry's JSON report the tests read.
type report struct {
	FSPlan []struct {
		Name   string `json:"name"`
		Driver string `json:"driver"`
		Path   string `json:"path"`
		Reason string `json:"reason"`
	} `json:"fs_plan"`
	ID             string   `json:"id"`
	Outcome        string   `json:"outcome"`
	Strategy       string   `json:"strategy"`
	StrategyReason string   `json:"strategy_reason"`
	ResidencyMs    float64  `json:"residency_ms"`
	FSDriver       string   `json:"fs_driver"`
	Compress       string   `json:"compress"`
	BWLimit        int64    `json:"bwlimit_bytes_per_s"`
	WireBytes      int64    `json:"wire_bytes"`
	DowntimeMs     float64  `json:"downtime_ms"`
	Error          string   `json:"error"`
	Addresses      []string `json:"addresses"`
	NetworkHook    string   `json:"network_hook"`
	Phases         []struct {
		Name    string  `json:"name"`
		StartMs float64 `json:"start_ms"`
		EndMs   float64 `json:"end_ms"`
	} `json:"phases"`
	Streams []struct {
		Name  string `json:"name"`
		Bytes int64  `json:"bytes"`
	} `json:"streams"`
	CRIU struct {
		FrozenTimeMs   float64 `json:"frozen_time_ms"`
		PagesWritten   uint64  `json:"pages_written"`
		PagesSkipped   uint64  `json:"pages_skipped_parent"`
		PagesRestored  uint64  `json:"pages_restored"`
		LocalBytes     int64   `json:"local_bytes"`
		LocalPageFiles int     `json:"local_page_files"`
	} `json:"criu"`
	Rollback []string `json:"rollback"`
	PreCopy  *struct {
		Rounds []struct {
			Round        int    `json:"round"`
			PagesWritten uint64 `json:"pages_written"`
			PagesSkipped uint64 `json:"pages_skipped_parent"`
			Bytes        int64  `json:"bytes"`
		} `json:"rounds"`
		Stop string `json:"stop"`
	} `json:"pre_copy"`
}

// migrate runs `ferry migrate NAME TO --output json [flags]` on host from (stop-copy unless the
// flags say otherwise: most tests are about something else than the strategy).
func migrate(t *testing.T, from, name, to string, flags ...string) (report, result) {
	t.Helper()
	if len(flags) == 0 {
		flags = []string{"--strategy", "stop-copy"}
	}
	r := lab(t, append([]string{"exec", from, "--", "ferry", "migrate", name, to, "--output", "json"}, flags...)...)
	var rep report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("ferry migrate printed no JSON report (%v)\nstdout: %s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return rep, r
}

// containers lists a host's containers and task states (name → status).
func containers(t *testing.T, host string) map[string]string {
	t.Helper()
	var st []struct {
		Name       string `json:"name"`
		Containers []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustLab(t, "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, h := range st {
		if h.Name == host {
			for _, c := range h.Containers {
				out[c.Name] = c.Status
			}
		}
	}
	return out
}

// bytesOf sums the report's streams whose name starts with prefix.
func (r report) bytesOf(prefix string) int64 {
	var n int64
	for _, s := range r.Streams {
		if strings.HasPrefix(s.Name, prefix) {
			n += s.Bytes
		}
	}
	return n
}

// planOf returns the plan entry of a mount.
func (r report) planOf(name string) (driver, reason string) {
	for _, m := range r.FSPlan {
		if m.Name == name {
			return m.Driver, m.Reason
		}
	}
	return "", ""
}

// armFaults writes fault lines (NAME ACTION) to host's /etc/ferry/failpoints, read by the
// failpoint build of ferry and ferry-receiver there, and removes the file when the test ends.
func armFaults(t *testing.T, host string, lines ...string) {
	t.Helper()
	mustLab(t, append([]string{"exec", host, "--", "sh", "-c", `printf '%s\n' "$@" > /etc/ferry/failpoints`, "sh"}, lines...)...)
	t.Cleanup(func() { lab(t, "exec", host, "--", "rm", "-f", "/etc/ferry/failpoints") })
}

// faultsPending is what remains of host's armed faults (a fault line is consumed when it fires).
func faultsPending(t *testing.T, host string) string {
	t.Helper()
	return strings.TrimSpace(mustLab(t, "exec", host, "--", "sh", "-c", "cat /etc/ferry/failpoints 2>/dev/null || true"))
}
