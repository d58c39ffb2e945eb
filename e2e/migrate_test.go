package e2e

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRoundTrip moves a 64 MiB workload that dirties memory a → b → a and proves each time that
// the same process kept its counter, memory and files, that the source copy is gone and the
// report is complete.
func TestRoundTrip(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "web", "--mem", "64", "--dirty", "1")

	for _, hop := range [][2]string{{"a", "b"}, {"b", "a"}} {
		from, to := hop[0], hop[1]
		rep, r := migrate(t, from, "web", to)
		if r.code != 0 || rep.Outcome != "committed" {
			t.Fatalf("%s→%s: exit %d, outcome %q, error %q\nstderr: %s", from, to, r.code, rep.Outcome, rep.Error, r.stderr)
		}
		if rep.Strategy != "stop-copy" || rep.FSDriver != "rsync" {
			t.Errorf("report strategy/driver = %q/%q", rep.Strategy, rep.FSDriver)
		}
		// No terminal here: progress on stderr is plain lines (the default --progress auto).
		for _, want := range []string{"ferry: web: dump…\n", "ferry: web: memory ", "ferry: web: committed\n"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s→%s: stderr lacks the progress line %q:\n%s", from, to, want, r.stderr)
			}
		}
		if strings.ContainsRune(r.stderr, '\x1b') {
			t.Errorf("%s→%s: escape sequences on stderr without a terminal: %q", from, to, r.stderr)
		}
		if rep.DowntimeMs <= 0 || rep.CRIU.PagesWritten < 64<<20/4096 || rep.CRIU.PagesRestored != rep.CRIU.PagesWritten {
			t.Errorf("report: downtime %.0f ms, pages written %d, restored %d", rep.DowntimeMs, rep.CRIU.PagesWritten, rep.CRIU.PagesRestored)
		}
		names := map[string]bool{}
		for _, p := range rep.Phases {
			names[p.Name] = p.EndMs >= p.StartMs
		}
		for _, p := range []string{"preflight", "prepare", "fs-presync", "freeze", "dump", "fs-final", "images", "restore", "commit"} {
			if !names[p] {
				t.Errorf("report lacks phase %s (phases: %v)", p, rep.Phases)
			}
		}
		// Disk-less: the memory went straight to the target's page server; the source wrote only
		// the small rest of the image set, and no page file at all.
		pages := rep.bytesOf("pages")
		if pages < 64<<20 {
			t.Errorf("the pages stream carried %d bytes for a 64 MiB workload", pages)
		}
		if rep.CRIU.LocalPageFiles != 0 || rep.CRIU.LocalBytes > 4<<20 {
			t.Errorf("the dump wrote %d page files, %d bytes on the source", rep.CRIU.LocalPageFiles, rep.CRIU.LocalBytes)
		}
		t.Logf("%s→%s: downtime %.0f ms, pages %d bytes streamed, %d bytes written locally", from, to, rep.DowntimeMs, pages, rep.CRIU.LocalBytes)
		if tasks := mustLab(t, "exec", to, "--", "ctr", "task", "ls"); !strings.Contains(tasks, "RUNNING") || !strings.Contains(tasks, "web") {
			t.Errorf("ctr task ls on %s:\n%s", to, tasks)
		}
		out := mustLab(t, "check", to, "web")
		if !strings.Contains(out, "OK") {
			t.Fatalf("check %s web: %s", to, out)
		}
		if st, ok := containers(t, from)["web"]; ok {
			t.Errorf("the source copy remains on %s (%s)", from, st)
		}
		if r := lab(t, "exec", from, "--", "test", "-e", "/var/lib/ferry/migrations/"+rep.ID); r.code == 0 {
			t.Errorf("%s keeps the local checkpoint of %s", from, rep.ID)
		}
		if st := mustLab(t, "exec", to, "--", "ferry-receiver", "status", rep.ID); !strings.Contains(st, `"committed"`) {
			t.Errorf("target's record of %s: %s", rep.ID, st)
		}
		assertTidyAfterCommit(t, to, rep.ID)
	}
	mustLab(t, "rm", "a", "web")
}

// TestUnknownHostKeyRefused: a host whose key is not in known_hosts, or whose key changed, is
// refused with a clear message, and nothing changes.
func TestUnknownHostKeyRefused(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "keyed", "--mem", "16")
	defer mustLab(t, "rm", "a", "keyed")
	save := mustLab(t, "exec", "a", "--", "cat", "/root/.ssh/known_hosts")
	defer mustLab(t, "exec", "a", "--", "sh", "-c", "cat > /root/.ssh/known_hosts <<'EOF'\n"+save+"EOF")

	// Unknown: b's line removed.
	mustLab(t, "exec", "a", "--", "sed", "-i", "/^b,/d", "/root/.ssh/known_hosts")
	_, r := migrate(t, "a", "keyed", "b")
	if r.code != 3 || !strings.Contains(r.stderr, "host key of b is unknown") || !strings.Contains(r.stderr, "SHA256:") {
		t.Errorf("unknown key: exit %d, stderr %q", r.code, r.stderr)
	}
	// Changed: b's name pinned to a's key.
	mustLab(t, "exec", "a", "--", "sh", "-c", `grep '^a,' /root/.ssh/known_hosts | sed 's/^a,198.18.0.11 /b,198.18.0.12 /' >> /root/.ssh/known_hosts`)
	_, r = migrate(t, "a", "keyed", "b")
	if r.code != 3 || !strings.Contains(r.stderr, "HOST KEY CHANGED for b") {
		t.Errorf("changed key: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, ok := containers(t, "b")["keyed"]; ok {
		t.Error("a container appeared on b")
	}
	mustLab(t, "check", "a", "keyed")
}

// TestNameTakenRefused: the name is taken on the target; preflight refuses and nothing changes
// on either host.
func TestNameTakenRefused(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "dup", "--mem", "16")
	mustLab(t, "run", "b", "dup", "--mem", "16")
	defer mustLab(t, "rm", "a", "dup")
	defer mustLab(t, "rm", "b", "dup")
	rep, r := migrate(t, "a", "dup", "b")
	if r.code != 3 || rep.Outcome != "refused" || !strings.Contains(r.stderr, `a container named "dup" already exists on b`) {
		t.Fatalf("exit %d, outcome %q, stderr %q", r.code, rep.Outcome, r.stderr)
	}
	if len(rep.Phases) != 1 || rep.Phases[0].Name != "preflight" {
		t.Errorf("refused migration ran phases %v", rep.Phases)
	}
	mustLab(t, "check", "a", "dup")
	mustLab(t, "check", "b", "dup")
	if r := lab(t, "exec", "b", "--", "test", "-e", "/var/lib/ferry/migrations/"+rep.ID); r.code == 0 {
		t.Errorf("the refused migration left a record on b")
	}
}

// TestReceiverKilledMidTransfer: ferry-receiver dies (SIGKILL) in the middle of the memory
// transfer (the pages stream). The source resumes with nothing lost; the target is left clean.
func TestReceiverKilledMidTransfer(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "big", "--mem", "128", "--dirty", "2")
	defer mustLab(t, "rm", "a", "big")
	armFaults(t, "b", "receiver/pages-mid kill")
	rep, r := migrate(t, "a", "big", "b")
	if r.code != 1 || rep.Outcome != "rolled_back" {
		t.Fatalf("exit %d, outcome %q, error %q\nstderr: %s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	if fp := faultsPending(t, "b"); fp != "" {
		t.Fatalf("the fault did not fire: %q", fp)
	}
	if st := containers(t, "a")["big"]; st != "running" {
		t.Errorf("source task is %q, want running", st)
	}
	mustLab(t, "check", "a", "big")
	assertNoResidue(t, "b", "big", rep.ID)
	if r := lab(t, "exec", "a", "--", "test", "-e", "/var/lib/ferry/migrations/"+rep.ID); r.code == 0 {
		t.Errorf("a keeps the checkpoint of the failed migration")
	}
}

// TestInterruptRollsBack: Ctrl-C (SIGINT) while the target restores rolls everything back.
func TestInterruptRollsBack(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "intr", "--mem", "32")
	defer mustLab(t, "rm", "a", "intr")
	// The target sleeps after its journal says "restoring" (not before: on a slow machine the
	// real restore is over between two polls, and the migration committed uninterrupted).
	armFaults(t, "b", "receiver/restoring sleep:4s")
	cmd := exec.Command(binDir+"/ferry-lab", "exec", "a", "--", "ferry", "migrate", "intr", "b", "--output", "json")
	var out strings.Builder
	cmd.Stdout = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // like a terminal's foreground job
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the target is restoring (its journal says so), then interrupt ferry.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := lab(t, "exec", "b", "--", "sh", "-c", "grep -l restoring /var/lib/ferry/migrations/*/journal.json")
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			_ = cmd.Wait()
			t.Fatalf("the migration never reached restore; ferry's report: %s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Ctrl-C: SIGINT to the whole process group (ferry-lab and the ferry it runs).
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil || !strings.Contains(out.String(), `"rolled_back"`) {
		t.Fatalf("interrupted migration: %v, report %s", err, out.String())
	}
	if st := containers(t, "a")["intr"]; st != "running" {
		t.Errorf("source task is %q, want running", st)
	}
	mustLab(t, "check", "a", "intr")
	// The receiver finishes its restore, sees the session end and undoes it.
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, ok := containers(t, "b")["intr"]
		if !ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertNoResidue(t, "b", "intr", "")
}

// TestWrongReceiverRefused: a target whose receiver speaks another protocol version, or that
// answers with something that is not ferry-receiver, is refused with a clear message.
func TestWrongReceiverRefused(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "ver", "--mem", "16")
	defer mustLab(t, "rm", "a", "ver")
	armFaults(t, "b", "receiver/old-protocol error")
	_, r := migrate(t, "a", "ver", "b")
	if r.code != 3 || !strings.Contains(r.stderr, "speaks protocol 0") || !strings.Contains(r.stderr, "install the same ferry version") {
		t.Errorf("old receiver: exit %d, stderr %q", r.code, r.stderr)
	}
	r = lab(t, "exec", "a", "--", "ferry", "migrate", "ver", "b", "--receiver-command", "echo Welcome to b;")
	if r.code != 3 || !strings.Contains(r.stderr, `printed "Welcome to b`) {
		t.Errorf("not a receiver: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, ok := containers(t, "b")["ver"]; ok {
		t.Error("a container appeared on b")
	}
	mustLab(t, "check", "a", "ver")
}
