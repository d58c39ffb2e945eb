package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRecoverAfterLostCommit: the commit's outcome is lost and the target cannot be asked
// (failpoints on the source), so ferry migrate exits 4 with the source frozen. ferry recover
// then asks the target and finishes its decision — both ways: the target had committed (the
// source copy goes), or COMMIT never reached it (the target aborts, the source resumes). Each
// time exactly one copy runs, the workload lost nothing, and the losing side has no residue.
func TestRecoverAfterLostCommit(t *testing.T) {
	requireLab(t)
	for _, c := range []struct {
		fault   string // on the source
		outcome string // what recover must conclude
		runsOn  string
	}{
		{"source/commit-reply-lost", "committed", "b"},
		{"source/commit-lost", "rolled_back", "a"},
	} {
		t.Run(c.fault, func(t *testing.T) {
			mustLab(t, "run", "a", "rec", "--mem", "32")
			defer func() { lab(t, "rm", "a", "rec"); lab(t, "rm", "b", "rec") }()
			armFaults(t, "a", c.fault+" error", "source/target-unreachable error")
			rep, r := migrate(t, "a", "rec", "b")
			if r.code != 4 || rep.Outcome != "in_doubt" || !strings.Contains(rep.Error, "ferry recover "+rep.ID) {
				t.Fatalf("exit %d, outcome %q, error %q", r.code, rep.Outcome, rep.Error)
			}
			if st := containers(t, "a")["rec"]; st != "paused" {
				t.Fatalf("in doubt, the source copy is %q, want paused (frozen)", st)
			}
			out := mustLab(t, "exec", "a", "--", "ferry", "recover", "--output", "json")
			var raw []map[string]any
			if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
				t.Fatalf("ferry recover output %q: %v", out, err)
			}
			if raw[0]["id"] != rep.ID || raw[0]["outcome"] != c.outcome {
				t.Fatalf("recover: %v, want outcome %s", raw[0], c.outcome)
			}
			other := map[string]string{"a": "b", "b": "a"}[c.runsOn]
			if st := containers(t, c.runsOn)["rec"]; st != "running" {
				t.Errorf("%s: rec is %q, want running", c.runsOn, st)
			}
			mustLab(t, "check", c.runsOn, "rec")
			if c.runsOn == "a" {
				assertNoResidue(t, "b", "rec", rep.ID)
			} else if _, ok := containers(t, other)["rec"]; ok {
				t.Errorf("the source copy remains on a after recover")
			}
			if out := mustLab(t, "exec", "a", "--", "ferry", "recover"); !strings.Contains(out, "no pending migrations") {
				t.Errorf("a second recover found work: %q", out)
			}
		})
	}
}
