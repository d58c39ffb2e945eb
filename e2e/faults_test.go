package e2e

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// TestFaultMatrix injects faults into the target at each phase of a migration and asserts the
// same invariants every time: exactly one copy runs, the workload's memory and counter are
// intact (ferry-lab check), and the side that does not run it has no residue. The matrix is
// printed as a table. Faults come from failpoints compiled only into the e2e build: the SSH
// connection dropped (its sshd processes killed), the receiver SIGKILLed, one byte of what arrives flipped, the target's disk filled up, or criu
// SIGKILLed mid-dump.
func TestFaultMatrix(t *testing.T) {
	requireLab(t)
	phases := []string{"preflight", "fs pre-sync", "memory", "final sync", "restore", "commit"}
	type at struct{ host, point string }
	faults := []struct {
		name, action string
		where        map[string]at // phase → where the fault is armed; absent: not applicable
	}{
		// The link drops: the sshd processes carrying the session die, the receiver lives on
		// and sees its stdin end. At commit the cut lands after the target has the COMMIT: the
		// source learns the outcome by asking again over a new connection.
		{"cut the SSH link", "cutlink", map[string]at{
			"preflight": {"b", "receiver/preflight"}, "fs pre-sync": {"b", "receiver/rsync-1"}, "memory": {"b", "receiver/pages-mid"},
			"final sync": {"b", "receiver/rsync-2"}, "restore": {"b", "receiver/restore"}, "commit": {"b", "receiver/commit"},
		}},
		// Silently: every SSH packet of the target dropped for 50 s, nothing closed. ferry's
		// keepalive gives up on the link (~40 s), the source rolls back and keeps reconnecting
		// to abort the target until the partition heals. One phase: each case takes ~1.5 min.
		{"partition the link (silent, 50 s)", "partition:50s", map[string]at{
			"memory": {"b", "receiver/pages-mid"},
		}},
		{"kill ferry-receiver", "kill", map[string]at{
			"preflight": {"b", "receiver/preflight"}, "fs pre-sync": {"b", "receiver/rsync-1"}, "memory": {"b", "receiver/pages-mid"},
			"final sync": {"b", "receiver/rsync-2"}, "restore": {"b", "receiver/restore"}, "commit": {"b", "receiver/commit"},
		}},
		{"corrupt one byte", "corrupt", map[string]at{
			"fs pre-sync": {"b", "receiver/rsync-1"}, "memory": {"b", "receiver/pages-mid"}, "final sync": {"b", "receiver/rsync-2"},
		}},
		// In the dump, criu dies while it waits for ferry at its pre-dump notification (before it
		// seizes a task: a fixed point, where racing a dump of a few milliseconds sometimes lost).
		// In the restore, the tasks criu had begun to build wait forever for the dead criu (and
		// runc with them) until ferry's restore watch kills them.
		{"kill criu", "killcriu", map[string]at{
			"memory": {"a", "criu/pre-dump"}, "restore": {"b", "receiver/restore|killcriu:forked"},
		}},
		// In the filesystem phases the workload has a data volume (moved by rsync) on a small
		// filesystem of the target: two rsync streams per sync, so 1 is in the pre-sync and 3
		// starts the final sync.
		{"fill the target disk", "filldisk:" + fillDir, map[string]at{
			"fs pre-sync": {"b", "receiver/rsync-1|filldisk:" + fillVolume}, "memory": {"b", "receiver/pages-mid"},
			"final sync": {"b", "receiver/rsync-3|filldisk:" + fillVolume}, "restore": {"b", "receiver/restore"},
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
			action := f.action
			if point, act, ok := strings.Cut(w.point, "|"); ok { // this cell's own variant
				w.point, action = point, act
			}
			kind, _, _ := strings.Cut(f.action, ":")
			t.Run(kind+"/"+strings.ReplaceAll(p, " ", "-"), func(t *testing.T) {
				cells[key] = "FAILED"
				cells[key] = faultCase(t, name, w.host, w.point, action)
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
			fmt.Fprintf(w, "\t%s", cmp.Or(cells[f.name+"|"+p], "(not run)"))
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	t.Logf("fault matrix (outcome; every cell: one copy runs, check passes, no residue on the other host):\n%s", b.String())
}

// fillDir is where the target keeps migrations, fillVolume a data volume's directory: the
// full-disk fault fills a small tmpfs mounted there on the target.
const (
	fillDir    = "/var/lib/ferry/migrations"
	fillVolume = "/srv/fm-fill" // the volume is fillVolume/vol (preflight refuses a mount point)
)

// faultCase runs one migration with the fault armed on the target and checks the invariants.
// It returns the cell's text.
func faultCase(t *testing.T, name, host, point, action string) string {
	run := []string{"run", "a", name, "--mem", "16"}
	if dir, ok := strings.CutPrefix(action, "filldisk:"); ok {
		// A small filesystem on the target, which the fault fills up.
		mustLab(t, "exec", "b", "--", "sh", "-c", "mkdir -p "+dir+" && mount -t tmpfs -o size=96m ferry-fill "+dir)
		defer mustLab(t, "exec", "b", "--", "sh", "-c", "umount "+dir+" && rmdir "+dir+" 2>/dev/null; true")
		if dir == fillVolume {
			run = append(run, "--volume", fillVolume+"/vol", "--volume-mib", "8")
			defer lab(t, "exec", "a", "--", "rm", "-rf", fillVolume)
		}
	}
	mustLab(t, run...)
	defer func() { lab(t, "rm", "a", name); lab(t, "rm", "b", name) }()
	armFaults(t, host, point+" "+action)
	rep, r := migrate(t, "a", name, "b")
	t.Logf("outcome %s (exit %d): %s", rep.Outcome, r.code, rep.Error)
	if fp := faultsPending(t, host); fp != "" {
		t.Fatalf("the fault %s %s did not fire (outcome %s)", point, action, rep.Outcome)
	}
	// The source sees only a broken stream; the target's account of it must reach the operator.
	if strings.HasPrefix(action, "filldisk:") && rep.Outcome != "committed" && !strings.Contains(strings.ToLower(rep.Error), "no space") {
		t.Errorf("the full disk is not what failed the migration: %s", rep.Error)
	}
	if action == "killcriu" && rep.Outcome == "rolled_back" && !strings.Contains(rep.Error, "criu was killed (SIGKILL)") {
		t.Errorf("the report does not say criu was killed: %s", rep.Error)
	}
	runsOn, other := "a", "b"
	switch {
	case rep.Outcome == "committed" && r.code == 0:
		runsOn, other = "b", "a"
		if action == "kill" || strings.HasPrefix(action, "killcriu") {
			t.Errorf("%s at %s, yet the migration committed: the fault had no effect", action, point)
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
		if strings.HasPrefix(action, "partition:") {
			// The partitioned session's receiver exits once its sshd learns, after the heal,
			// that the connection is gone; the source's abort waited for it.
			waitNoReceiver(t, "b", 2*time.Minute)
		}
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
	return "committed (repaired), runs on b"
}

// waitNoReceiver waits until no ferry-receiver runs on host, or fails the test.
func waitNoReceiver(t *testing.T, host string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(2 * time.Second) {
		if !slices.Contains(hostProcesses(t, host), "ferry-receiver") {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: ferry-receiver still runs %s after the migration ended", host, d)
			return
		}
	}
}
