package migrate

import (
	"strings"
	"testing"
	"time"

	"github.com/ferry-project/ferry/transport/wire"
)

func TestCheckReport(t *testing.T) {
	src := wire.HostFacts{Host: "a", Kernel: "6.18", CRIUVersion: 40201, Rsync: "3.2.7", ContainerdVer: "1.6.20", FreeBytes: 10 << 30, CPUInfo: []byte{1}}
	dst := src
	dst.Host, dst.Userfaultfd = "b", true
	in := CheckInput{Source: src, SourceZFS: "zfs is not installed", Facts: wire.FactsReply{Target: dst, ZFSParent: "tank/ferry"},
		LinkBps: 400e6, MaxDowntime: time.Second}
	r := Check(in)
	if !r.OK || len(r.Problems) != 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	if want := uint64(0.35 * 400e6 * 0.75); r.Auto.StopCopyUpToBytes != want || r.Auto.Above != PostCopy {
		t.Errorf("auto: %+v, want stop-copy up to %d then post-copy", r.Auto, want)
	}
	if r.Strategies[1].Available || !strings.Contains(r.Strategies[1].Why, "soft-dirty") || !r.Strategies[2].Available {
		t.Errorf("strategies: %+v", r.Strategies)
	}
	if r.Source.CPUInfo != nil || r.TargetZFS != "tank/ferry" || r.SourceZFS != "zfs is not installed" {
		t.Errorf("report: %+v", r)
	}
	text := r.Text()
	for _, want := range []string{"ferry check: a → b", "CRIU", "4.2.1", "pre-copy   no: pre-copy needs soft-dirty", "post-copy  yes",
		"auto (max downtime 1s): stop-copy up to 100.1 MiB of memory in use; above that post-copy", "OK: a migration from a to b can run"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// An incompatible CPU and a failing criu check on the target: not OK, each said.
	in.Facts.CPU = &wire.Problem{Message: "b's CPU lacks features of a's CPU"}
	in.Facts.Problems = []wire.Problem{{Message: "`criu check` fails on b: x"}}
	r = Check(in)
	if r.OK || len(r.Problems) != 2 || !strings.Contains(r.Text(), "NOT OK") {
		t.Errorf("problems %v, text:\n%s", r.Problems, r.Text())
	}
	// A container whose preflight was refused brings its reasons.
	in.Facts.CPU, in.Facts.Problems = nil, nil
	in.Container = &Report{Container: "web", Outcome: OutcomeRefused, Problems: []string{"a container named \"web\" already exists on b"}}
	if r = Check(in); r.OK || r.Problems[0] != in.Container.Problems[0] {
		t.Errorf("container refusal not carried: %v", r.Problems)
	}
}

func TestStopCopyLimit(t *testing.T) {
	if StopCopyLimit(500*time.Millisecond, 1e9) != 0 || StopCopyLimit(time.Second, 0) != 0 {
		t.Error("a limit below the fixed cost or without a link must be 0")
	}
	if got := EstimateStopCopy(StopCopyLimit(2*time.Second, 1e8), 1e8); got > 2*time.Second+time.Millisecond || got < 2*time.Second-time.Millisecond {
		t.Errorf("the limit's estimate is %s, want 2s", got)
	}
}
