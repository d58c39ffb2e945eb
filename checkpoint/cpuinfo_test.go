package checkpoint

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/checkpoint/cpuinfotest"
)

// TestCPUInfoCheck runs the real CRIU: this host's own CPU description passes its check; one
// claiming every x86 feature bit (a CPU this one is not) is refused with CRIU's reason.
func TestCPUInfoCheck(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (criu cpuinfo)")
	}
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed")
	}
	ctx := context.Background()
	img, err := CPUInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCPUInfo(ctx, img); err != nil {
		t.Fatalf("this host's own CPU description is refused: %v", err)
	}

	alien, err := cpuinfotest.Richer(img)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckCPUInfo(ctx, alien)
	if err == nil {
		t.Fatal("a CPU description claiming every feature passed the check")
	}
	if !strings.Contains(err.Error(), "criu cpuinfo check") {
		t.Errorf("error %q does not say what failed", err)
	}
	t.Logf("refused as expected: %v", err)

	for _, bad := range [][]byte{nil, []byte("not an image"), make([]byte, MaxCPUInfo+1)} {
		if err := CheckCPUInfo(ctx, bad); err == nil {
			t.Errorf("a %d-byte bogus image passed", len(bad))
		}
	}
}
