package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/checkpoint"
	ferrylab "github.com/ferry-project/ferry/lab"
)

// TestSecurityStateSurvives: a hardened container (default seccomp profile, no_new_privs, a
// reduced capability set, memory/CPU/pids limits), run as root and as an unprivileged user,
// keeps every one of them across a stop-copy move and a post-copy move back: its init's
// Seccomp, Seccomp_filters, NoNewPrivs, CapEff, CapPrm, CapBnd, Uid and Gid, and its cgroup's
// limits are equal before and after — and are the hardened values, so a migration that
// silently weakened them (or restored the task as root) could not pass.
func TestSecurityStateSurvives(t *testing.T) {
	requireLab(t)
	for _, tc := range []struct{ name, user, ids string }{
		{"sec", "", "0 0 0 0"},
		{"sec-user", "1000:1001", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const mem = 32
			run := []string{"run", "a", tc.name, "--mem", fmt.Sprint(mem), "--hardened"}
			if tc.user != "" {
				run = append(run, "--user", tc.user)
			}
			mustLab(t, run...)
			defer func() { lab(t, "rm", "a", tc.name); lab(t, "rm", "b", tc.name) }()
			before := securityState(t, "a", tc.name)
			want := map[string]string{
				"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "00000000000000eb", "CapBnd": "00000000000000eb",
				"memory.limit_in_bytes": fmt.Sprint(ferrylab.HardenedMemoryLimit(mem)), "pids.max": fmt.Sprint(ferrylab.HardenedPids),
				"cpu.cfs_quota_us": fmt.Sprint(ferrylab.HardenedCPUQuota), "cpu.cfs_period_us": fmt.Sprint(ferrylab.HardenedCPUPeriod),
				"Uid": "0 0 0 0", "Gid": "0 0 0 0",
			}
			if uid, gid, ok := strings.Cut(tc.user, ":"); ok { // its capabilities are ambient ones
				want["CapAmb"] = "00000000000000eb"
				want["Uid"] = strings.Repeat(uid+" ", 3) + uid
				want["Gid"] = strings.Repeat(gid+" ", 3) + gid
			}
			for k, v := range want {
				if before[k] != v {
					t.Fatalf("the hardened container starts with %s = %q, want %q (state %v)", k, before[k], v, before)
				}
			}
			if n := before["Seccomp_filters"]; n == "" || n == "0" {
				t.Fatalf("no seccomp filter before the move: %v", before)
			}
			if tc.user != "" && !checkpoint.HasCapSysResource() {
				// CRIU reads each task's rlimits with prlimit(2): for another uid that needs
				// CAP_SYS_RESOURCE, which root lacks on some machines. Preflight must say so and
				// change nothing.
				rep, r := migrate(t, "a", tc.name, "b")
				if r.code != 3 || rep.Outcome != "refused" || !strings.Contains(rep.Error, "CAP_SYS_RESOURCE") {
					t.Fatalf("without CAP_SYS_RESOURCE, want a refusal naming it: exit %d %s %s", r.code, rep.Outcome, rep.Error)
				}
				mustLab(t, "check", "a", tc.name)
				assertNoResidue(t, "b", tc.name, rep.ID)
				t.Skipf("this machine's root lacks CAP_SYS_RESOURCE, so CRIU cannot dump a container of another uid here; verified instead that preflight refuses it (%q) with nothing changed", rep.Error)
			}
			from, to := "a", "b"
			for _, strategy := range []string{"stop-copy", "post-copy"} {
				rep, r := migrate(t, from, tc.name, to, "--strategy", strategy)
				if r.code != 0 || rep.Outcome != "committed" {
					t.Fatalf("%s %s→%s: exit %d %s %s\n%s", strategy, from, to, r.code, rep.Outcome, rep.Error, r.stderr)
				}
				after := securityState(t, to, tc.name)
				for k, v := range before {
					if after[k] != v {
						t.Errorf("after %s %s→%s: %s = %q, was %q", strategy, from, to, k, after[k], v)
					}
				}
				mustLab(t, "check", to, tc.name)
				from, to = to, from
			}
		})
	}
}

// securityState reads the container's init: /proc/PID/status fields and its cgroup limits.
func securityState(t *testing.T, host, name string) map[string]string {
	t.Helper()
	pid := taskPID(t, host, name)
	st := map[string]string{}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		switch k {
		case "Seccomp", "Seccomp_filters", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "CapAmb", "Uid", "Gid":
			if ok {
				st[k] = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{} // controller → path
	for _, l := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 {
			for _, c := range strings.Split(f[1], ",") {
				paths[c] = f[2]
			}
		}
	}
	for _, x := range []struct{ ctl, file string }{
		{"memory", "memory.limit_in_bytes"}, {"pids", "pids.max"}, {"cpu", "cpu.cfs_quota_us"}, {"cpu", "cpu.cfs_period_us"},
	} {
		p, ok := paths[x.ctl]
		if !ok {
			t.Fatalf("%s on %s is in no %s cgroup: %s", name, host, x.ctl, cg)
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/" + x.ctl + "*")
		found := false
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, p, x.file)); err == nil {
				st[x.file] = strings.TrimSpace(string(b))
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("cannot read %s of %s on %s (cgroup %s)", x.file, name, host, p)
		}
	}
	return st
}

// taskPID is the host PID of a lab container's init.
func taskPID(t *testing.T, host, name string) int {
	t.Helper()
	var st []struct {
		Name       string `json:"name"`
		Containers []struct {
			Name string `json:"name"`
			PID  int    `json:"pid"`
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustLab(t, "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, h := range st {
		for _, c := range h.Containers {
			if h.Name == host && c.Name == name && c.PID > 0 {
				return c.PID
			}
		}
	}
	t.Fatalf("no running %s on %s", name, host)
	return 0
}
