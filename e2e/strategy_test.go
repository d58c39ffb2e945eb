package e2e

import (
	"strings"
	"testing"
)

// TestPostCopy moves a 256 MiB workload that keeps dirtying memory with post-copy: the target
// runs it at once and fetches the memory; the source goes away only once every page arrived.
func TestPostCopy(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "lazy", "--mem", "256", "--dirty", "4")
	rep, r := migrate(t, "a", "lazy", "b", "--strategy", "post-copy")
	if r.code != 0 || rep.Outcome != "committed" || rep.Strategy != "post-copy" {
		t.Fatalf("exit %d %s %s: %s\n%s", r.code, rep.Outcome, rep.Strategy, rep.Error, r.stderr)
	}
	if rep.ResidencyMs <= rep.DowntimeMs || rep.bytesOf("pages") < 256<<20 {
		t.Errorf("residency %.0f ms (downtime %.0f ms), pages %d bytes", rep.ResidencyMs, rep.DowntimeMs, rep.bytesOf("pages"))
	}
	t.Logf("post-copy 256 MiB: downtime %.0f ms, every page on b after %.0f ms", rep.DowntimeMs, rep.ResidencyMs)
	mustLab(t, "check", "b", "lazy")
	assertTidyAfterCommit(t, "b", rep.ID)
	if _, ok := containers(t, "a")["lazy"]; ok {
		t.Error("the source copy remains on a")
	}
	mustLab(t, "rm", "b", "lazy")
}

// TestPostCopyRollback: a post-copy migration that fails before the commit leaves the source
// running with nothing lost and the target clean (the lazy dump stops serving, the daemon dies).
func TestPostCopyRollback(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "lazyfail", "--mem", "64", "--dirty", "2")
	defer mustLab(t, "rm", "a", "lazyfail")
	armFaults(t, "b", "receiver/ready error")
	rep, r := migrate(t, "a", "lazyfail", "b", "--strategy", "post-copy")
	if r.code != 1 || rep.Outcome != "rolled_back" {
		t.Fatalf("exit %d, outcome %q: %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	mustLab(t, "check", "a", "lazyfail")
	assertNoResidue(t, "b", "lazyfail", rep.ID)
}

// TestAutoStrategy: auto measures the link and estimates stop-copy's downtime; with a generous
// limit it takes stop-copy, with a tiny one the best strategy this kernel allows (post-copy:
// no soft-dirty here), and the report says why.
func TestAutoStrategy(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "auto", "--mem", "64")
	rep, r := migrate(t, "a", "auto", "b", "--strategy", "auto", "--max-downtime", "1h")
	if r.code != 0 || rep.Strategy != "stop-copy" || !strings.Contains(rep.StrategyReason, "≤ max 1h") {
		t.Fatalf("generous limit: exit %d, %s (%s): %s", r.code, rep.Strategy, rep.StrategyReason, rep.Error)
	}
	rep, r = migrate(t, "b", "auto", "a", "--strategy", "auto", "--max-downtime", "1ms")
	if r.code != 0 || rep.Strategy != "post-copy" || !strings.Contains(rep.StrategyReason, "> max 1ms") || !strings.Contains(rep.StrategyReason, "soft-dirty") {
		t.Fatalf("tiny limit: exit %d, %s (%s): %s", r.code, rep.Strategy, rep.StrategyReason, rep.Error)
	}
	mustLab(t, "check", "a", "auto")
	// pre-copy is refused here, with the reason, and nothing changes.
	rep, r = migrate(t, "a", "auto", "b", "--strategy", "pre-copy")
	if r.code != 3 || !strings.Contains(r.stderr, "CONFIG_MEM_SOFT_DIRTY") {
		t.Errorf("pre-copy on a kernel without soft-dirty: exit %d, stderr %q", r.code, r.stderr)
	}
	mustLab(t, "check", "a", "auto")
	mustLab(t, "rm", "a", "auto")
}

// TestPostCopyStall: a post-copy fill that stops moving (the target's lazy-pages daemon hangs
// once the restore is done) ends after the stall window (--postcopy-stall) instead of waiting
// forever: exit 6, outcome committed_incomplete, the reason; the source copy stays frozen with
// every page (resumed, it verifies all its memory).
func TestPostCopyStall(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "stall", "--mem", "128", "--dirty", "2")
	defer func() { lab(t, "rm", "a", "stall"); lab(t, "rm", "b", "stall") }()
	armFaults(t, "b", "receiver/ready stop")
	rep, r := migrate(t, "a", "stall", "b", "--strategy", "post-copy", "--postcopy-stall", "5s")
	// The stopped daemon; "[l]" keeps pkill from matching the ferry-lab exec that runs it.
	defer lab(t, "exec", "b", "--", "pkill", "-KILL", "-f", "[l]azy-pages")
	if faultsPending(t, "b") != "" {
		t.Fatalf("the fault did not fire (outcome %s)", rep.Outcome)
	}
	if r.code != 6 || rep.Outcome != "committed_incomplete" || !strings.Contains(rep.Error, "stalled: no byte moved between the hosts for 5s") {
		t.Fatalf("exit %d, outcome %q: %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	if st := containers(t, "a")["stall"]; st != "paused" {
		t.Fatalf("the source copy is %q, want paused (frozen)", st)
	}
	mustLab(t, "exec", "a", "--", "ctr", "task", "resume", "stall")
	mustLab(t, "check", "a", "stall")
}
