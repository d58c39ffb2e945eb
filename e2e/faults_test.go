package e2e

import (
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
)

// TestFaultMatrix injects faults into the target at each phase of a migration and asserts the
// same invariants every time: exactly one copy runs, the workload's memory and counter are
// intact (ferry-lab check), and the side that does not run it has no residue. The matrix is
// printed as a table. Faults come from failpoints compiled only into the e2e build: the
// receiver SIGKILLed, one byte of what arrives flipped, or criu SIGKILLed mid-work (a restore
// may finish before the kill lands: then the migration commits, with the same invariants).
func TestFaultMatrix(t *testing.T) {
	requireLab(t)
	phases := []string{"preflight", "fs pre-sync", "memory", "final sync", "restore", "commit"}
	type at struct{ host, point string }
	faults := []struct {
		name, action string
		where        map[string]at // phase → where the fault is armed; absent: not applicable
	}{
		{"kill ferry-receiver", "kill", map[string]at{
			"preflight": {"b", "receiver/preflight"}, "fs pre-sync": {"b", "receiver/rsync-1"}, "memory": {"b", "receiver/pages-mid"},
			"final sync": {"b", "receiver/rsync-2"}, "restore": {"b", "receiver/restore"}, "commit": {"b", "receiver/commit"},
		}},
		{"corrupt one byte", "corrupt", map[string]at{
			"fs pre-sync": {"b", "receiver/rsync-1"}, "memory": {"b", "receiver/pages-mid"}, "final sync": {"b", "receiver/rsync-2"},
		}},
		{"kill criu", "killcriu", map[string]at{
			"memory": {"a", "source/dump"}, "restore": {"b", "receiver/restore"},
		}},
	}
	cells := map[string]string{}
	n := 0
	for _, f := range faults {
		for _, p := range phases {
			key := f.name + "|" + p
			w, ok := f.where[p]
			if !ok {
				cells[key] = "n/a"
				continue
			}
			n++
			name := fmt.Sprintf("fm-%d", n)
			t.Run(f.action+"/"+strings.ReplaceAll(p, " ", "-"), func(t *testing.T) {
				cells[key] = "FAILED"
				cells[key] = faultCase(t, name, w.host, w.point, f.action)
			})
		}
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "fault \\ phase")
	for _, p := range phases {
		fmt.Fprintf(w, "\t%s", p)
	}
	fmt.Fprintln(w)
	for _, f := range faults {
		fmt.Fprint(w, f.name)
		for _, p := range phases {
			fmt.Fprintf(w, "\t%s", cells[f.name+"|"+p])
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	t.Logf("fault matrix (outcome; every cell: one copy runs, check passes, no residue on the other host):\n%s", b.String())
}

// faultCase runs one migration with the fault armed on the target and checks the invariants.
// It returns the cell's text.
func faultCase(t *testing.T, name, host, point, action string) string {
	mustLab(t, "run", "a", name, "--mem", "16")
	defer func() { lab(t, "rm", "a", name); lab(t, "rm", "b", name) }()
	mustLab(t, "exec", host, "--", "sh", "-c", fmt.Sprintf("echo '%s %s' > /etc/ferry/failpoints", point, action))
	defer lab(t, "exec", host, "--", "rm", "-f", "/etc/ferry/failpoints")
	rep, r := migrate(t, "a", name, "b")
	if fp := mustLab(t, "exec", host, "--", "sh", "-c", "cat /etc/ferry/failpoints 2>/dev/null || true"); strings.TrimSpace(fp) != "" {
		t.Fatalf("the fault %s %s did not fire (outcome %s)", point, action, rep.Outcome)
	}
	runsOn, other := "a", "b"
	switch {
	case rep.Outcome == "committed" && r.code == 0:
		runsOn, other = "b", "a"
		if action == "kill" {
			t.Errorf("the receiver was killed at %s, yet the migration committed", point)
		}
	case (rep.Outcome == "rolled_back" || rep.Outcome == "refused") && r.code != 0:
	default:
		t.Fatalf("exit %d, outcome %q, error %q\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	if st := containers(t, runsOn)[name]; st != "running" {
		t.Errorf("%s: %s is %q, want running", runsOn, name, st)
	}
	mustLab(t, "check", runsOn, name)
	if runsOn == "a" {
		assertNoResidue(t, "b", name, rep.ID)
	} else if _, ok := containers(t, other)[name]; ok {
		t.Errorf("committed, yet the source copy remains on a")
	}
	if t.Failed() {
		return "FAILED"
	}
	if runsOn == "a" {
		return rep.Outcome + ", runs on a"
	}
	if action == "corrupt" {
		return "committed (repaired), runs on b"
	}
	return "committed (criu had finished), runs on b"
}
