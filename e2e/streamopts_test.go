package e2e

import (
	"testing"
)

// TestCompressedAndLimited: --compress zstd and --bwlimit apply to every stream. A workload with
// random memory and a ZFS volume holding 32 MiB of zeros moves a→b (stop-copy: pages, rsync,
// zfs send) and back (post-copy: the lazy stream, relayed through the compressor on the
// target). The zeros shrink on the wire, the random memory does not grow, and nothing is lost.
func TestCompressedAndLimited(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "zc", "--mem", "64", "--dirty", "2", "--volume", "/srv/zc:zfs", "--volume-mib", "16")
	mustLab(t, "exec", "a", "--", "dd", "if=/dev/zero", "of=/srv/zc/zeros", "bs=1M", "count=32", "status=none")
	rep, r := migrate(t, "a", "zc", "b", "--strategy", "stop-copy", "--compress", "zstd", "--bwlimit", "300M")
	if r.code != 0 || rep.Outcome != "committed" {
		t.Fatalf("exit %d %s %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	payload := rep.bytesOf("")
	if d, _ := rep.planOf("vol-1"); d != "zfs" {
		t.Errorf("volume moved by %q, want zfs", d)
	}
	if rep.Compress != "zstd" || rep.BWLimit != 300<<20 {
		t.Errorf("report: compress %q, bwlimit %d", rep.Compress, rep.BWLimit)
	}
	// 64 MiB of random memory cannot shrink; 32 MiB of zeros must nearly vanish.
	if rep.WireBytes < 60<<20 || rep.WireBytes > payload-28<<20 {
		t.Errorf("%d bytes on the wire for %d bytes of streams (%+v)", rep.WireBytes, payload, rep.Streams)
	}
	t.Logf("stop-copy, zstd, 300 MiB/s: %d stream bytes, %d on the wire, downtime %.0f ms", payload, rep.WireBytes, rep.DowntimeMs)
	mustLab(t, "check", "b", "zc")
	mustLab(t, "exec", "b", "--", "cmp", "-n", "33554432", "/srv/zc/zeros", "/dev/zero")

	rep, r = migrate(t, "b", "zc", "a", "--strategy", "post-copy", "--compress", "zstd")
	if r.code != 0 || rep.Outcome != "committed" || rep.Compress != "zstd" {
		t.Fatalf("post-copy back: exit %d %s %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	if rep.WireBytes < 60<<20 {
		t.Errorf("post-copy: %d bytes on the wire", rep.WireBytes)
	}
	mustLab(t, "check", "a", "zc")
	mustLab(t, "rm", "a", "zc")
}
