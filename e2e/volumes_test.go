package e2e

import (
	"strings"
	"testing"
)

// TestZFSVolumeRoundTrip: a workload writing to a 256 MiB ZFS volume moves a → b with every byte
// intact (full send while running, delta after the freeze), then back, sending only the changes.
func TestZFSVolumeRoundTrip(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "zdb", "--mem", "32", "--volume", "/srv/zdb:zfs", "--volume-mib", "256")
	first, r := migrate(t, "a", "zdb", "b")
	if r.code != 0 || first.Outcome != "committed" {
		t.Fatalf("a→b: exit %d %s %s\n%s", r.code, first.Outcome, first.Error, r.stderr)
	}
	if d, why := first.planOf("vol-1"); d != "zfs" || !strings.Contains(why, "full send") {
		t.Errorf("a→b plan for the volume: %s (%s)", d, why)
	}
	if d, _ := first.planOf("rootfs"); d != "rsync" {
		t.Errorf("a→b plan for the writable layer: %s", d)
	}
	mustLab(t, "check", "b", "zdb")
	if out := mustLab(t, "exec", "b", "--", "sh", "-c", "grep ' /srv/zdb ' /proc/self/mountinfo"); !strings.Contains(out, "tank/ferry/") {
		t.Errorf("on b, /srv/zdb is not the received dataset: %s", out)
	}

	back, r := migrate(t, "b", "zdb", "a")
	if r.code != 0 || back.Outcome != "committed" {
		t.Fatalf("b→a: exit %d %s %s\n%s", r.code, back.Outcome, back.Error, r.stderr)
	}
	if d, why := back.planOf("vol-1"); d != "zfs" || !strings.Contains(why, "incremental from @ferry-") {
		t.Errorf("b→a plan for the volume: %s (%s)", d, why)
	}
	mustLab(t, "check", "a", "zdb")
	sent1, sent2 := first.bytesOf("vol-1"), back.bytesOf("vol-1")
	t.Logf("volume bytes: a→b %d, b→a %d; downtime %.0f / %.0f ms", sent1, sent2, first.DowntimeMs, back.DowntimeMs)
	if sent1 < 256<<20 || sent2*20 > sent1 {
		t.Errorf("moving back sent %d bytes of volume after %d: want only the changes", sent2, sent1)
	}
	// Each side keeps one ferry snapshot (the base of the next move); the old copy on b is retired.
	out := mustLab(t, "exec", "b", "--", "zfs", "list", "-H", "-t", "all", "-o", "name,canmount,mounted", "-r", "tank/ferry/zdb-vol-1")
	if strings.Count(out, "@ferry-") != 1 || !strings.Contains(out, "noauto") {
		t.Errorf("b's retired copy:\n%s", out)
	}
	mustLab(t, "rm", "a", "zdb")
}

// TestRsyncFallbackWhenTargetHasNoPool: the target offers no ZFS parent dataset, so a ZFS volume
// moves with rsync, and the report says why.
func TestRsyncFallbackWhenTargetHasNoPool(t *testing.T) {
	requireLab(t)
	mustLab(t, "exec", "b", "--", "mv", "/etc/ferry/ferry.toml", "/etc/ferry/ferry.toml.off")
	defer mustLab(t, "exec", "b", "--", "mv", "/etc/ferry/ferry.toml.off", "/etc/ferry/ferry.toml")
	mustLab(t, "run", "a", "fb", "--mem", "16", "--volume", "/srv/fb:zfs", "--volume-mib", "32")
	rep, r := migrate(t, "a", "fb", "b")
	if r.code != 0 || rep.Outcome != "committed" {
		t.Fatalf("exit %d %s %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	if d, why := rep.planOf("vol-1"); d != "rsync" || !strings.Contains(why, "b has no ZFS parent dataset") {
		t.Errorf("plan for the volume: %s (%s)", d, why)
	}
	mustLab(t, "check", "b", "fb")
	mustLab(t, "rm", "b", "fb")
}

// TestRsyncVolumeKeepsEverything: a plain volume holding hard links, an ACL, xattrs, a sparse
// file, a device node and a fifo arrives with all of them, as stat/getfattr/getfacl see them.
func TestRsyncVolumeKeepsEverything(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "files", "--volume", "/srv/files", "--", "sleep", "100000")
	populate := `set -e; cd /srv/files
echo hello > a; ln a a-link; setfattr -n user.color -v blue a; setfacl -m u:4321:rw a
truncate -s 64M sparse; echo end >> sparse; mknod null c 1 3; mkfifo fifo; mkdir -p d; chown 1234:5678 d`
	mustLab(t, "exec", "a", "--", "sh", "-c", populate)
	describe := `cd /srv/files && for f in a a-link sparse null fifo d; do stat -c '%n %F %s %a %u:%g %t:%T links=%h' $f; done
ls -i a a-link | awk '{print $1}' | uniq | wc -l
du -k sparse | cut -f1
getfattr -d a | grep color; getfacl -p a | grep 4321`
	before := mustLab(t, "exec", "a", "--", "sh", "-c", describe)
	rep, r := migrate(t, "a", "files", "b")
	if r.code != 0 || rep.Outcome != "committed" {
		t.Fatalf("exit %d %s %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	after := mustLab(t, "exec", "b", "--", "sh", "-c", describe)
	if before != after {
		t.Errorf("the volume changed on the way:\nbefore (a):\n%s\nafter (b):\n%s", before, after)
	}
	for _, want := range []string{"user.color=\"blue\"", "user:4321:rw-", "character special file", "fifo", "links=2"} {
		if !strings.Contains(after, want) {
			t.Errorf("after the move, %q is missing:\n%s", want, after)
		}
	}
	mustLab(t, "rm", "b", "files")
}

// TestZFSVolumeAbortLeavesNothing: the receiver dies during the move of a container with a ZFS
// volume: the source resumes with its dataset mounted and no ferry snapshot left; the target has
// no dataset, no mount, no directory.
func TestZFSVolumeAbortLeavesNothing(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "zab", "--mem", "32", "--volume", "/srv/zab:zfs", "--volume-mib", "32")
	defer mustLab(t, "rm", "a", "zab")
	armFaults(t, "b", "receiver/pages-mid kill")
	rep, r := migrate(t, "a", "zab", "b")
	if r.code != 1 || rep.Outcome != "rolled_back" {
		t.Fatalf("exit %d, outcome %q, error %q\nstderr: %s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	mustLab(t, "check", "a", "zab")
	if out := mustLab(t, "exec", "a", "--", "zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-r", "tank/vols/zab"); strings.Contains(out, "@ferry-") {
		t.Errorf("ferry snapshots remain on a: %s", out)
	}
	if out := mustLab(t, "exec", "b", "--", "zfs", "list", "-H", "-o", "name", "-r", "tank/ferry"); strings.Contains(out, "zab") {
		t.Errorf("a dataset remains on b: %s", out)
	}
	if r := lab(t, "exec", "b", "--", "test", "-e", "/srv/zab"); r.code == 0 {
		t.Error("/srv/zab remains on b")
	}
	assertNoResidue(t, "b", "zab", rep.ID)
}
