package receiver

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/checkpoint/cpuinfotest"
	"github.com/ferry-project/ferry/transport/wire"
)

// TestCPUProblem runs the real `criu cpuinfo check`: a source with this CPU passes; a source
// whose CPU has features this one lacks is refused, naming both hosts; a source that sent no
// description is refused too.
func TestCPUProblem(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (criu cpuinfo)")
	}
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed")
	}
	ctx := context.Background()
	img, err := checkpoint.CPUInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alien, err := cpuinfotest.Richer(img)
	if err != nil {
		t.Fatal(err)
	}
	tgt := wire.HostFacts{Host: "b", CRIUVersion: 40101}
	if p := cpuProblem(ctx, tgt, wire.HostFacts{Host: "a", CPUInfo: img}); p != nil {
		t.Fatalf("same CPU refused: %+v", p)
	}
	p := cpuProblem(ctx, tgt, wire.HostFacts{Host: "a", CPUInfo: alien})
	if p == nil || p.Code != "unsupported" || !strings.Contains(p.Message, "b's CPU lacks features of a's CPU") || !strings.Contains(p.Message, "criu cpuinfo check") {
		t.Fatalf("richer source CPU: %+v", p)
	}
	if p := cpuProblem(ctx, tgt, wire.HostFacts{Host: "a"}); p == nil || p.Code != "precondition" {
		t.Fatalf("no CPU description: %+v", p)
	}
	if p := cpuProblem(ctx, tgt, wire.HostFacts{Host: "a", CPUInfo: []byte("garbage")}); p == nil {
		t.Fatal("a garbage CPU description passed")
	}
}
