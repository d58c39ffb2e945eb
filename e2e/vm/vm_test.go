// Package vm proves in a VM what this machine's kernel cannot show. Pre-copy needs soft-dirty
// memory tracking (CONFIG_MEM_SOFT_DIRTY), which this kernel may lack; Debian's stock kernel
// has it. TestPreCopyInVM boots that kernel under qemu (ferry-lab vm: TCG, this machine's root
// read-only under a tmpfs overlay) and runs the e2e package's pre-copy tests there, on a lab of
// their own. `make test` runs it; `make test-precopy` runs only it.
package vm

import (
	"bytes"
	"cmp"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ferry-project/ferry/lab"
)

// inVM are the e2e tests (or subtests) run in the VM; each must pass there (a skip there is a
// failure: the VM exists so that they can run). The VM's root also has CAP_SYS_RESOURCE, which
// a container of another uid needs (TestSecurityStateSurvives/sec-user). Established TCP
// connections run on the lab directly now that ferry installs CRIU 4.2.
var inVM = []string{"TestPreCopy", "TestPreCopyRollback", "TestSecurityStateSurvives/sec-user", "TestZZLabDownLeavesNothing"}

func TestPreCopyInVM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (the lab in the VM): run make test as root")
	}
	if exec.Command("criu", "check", "--feature", "mem_dirty_track").Run() == nil {
		t.Skip("this machine's kernel tracks dirty memory: the e2e package runs the pre-copy tests directly")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed: run make deps")
	}
	k, err := lab.FindKernel("")
	if err != nil {
		t.Skip(err.Error())
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	bin := filepath.Join(root, "bin", "vm")
	build(t, root, bin)

	var tops []string
	for _, name := range inVM {
		top, _, _ := strings.Cut(name, "/")
		tops = append(tops, top)
	}
	pattern := "^(" + strings.Join(tops, "|") + ")$"
	var out bytes.Buffer
	start := time.Now()
	cmd := exec.Command(filepath.Join(bin, "ferry-lab"), "vm", "--timeout", "40m",
		"--env", "FERRY_E2E_BIN="+bin, "--env", "FERRY_E2E_ZFS=0", "--",
		filepath.Join(bin, "e2e.test"), "-test.run", pattern, "-test.v", "-test.count=1", "-test.timeout", "30m")
	cmd.Dir = root
	// One writer for both: exec then never calls it from two goroutines at once.
	w := io.MultiWriter(&out, lineLogger{t})
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	t.Logf("the VM (kernel %s) ran its tests in %s", k.Version, time.Since(start).Round(time.Second))
	results := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\r?\s*--- (PASS|FAIL|SKIP): ([\w/-]+)`).FindAllStringSubmatch(out.String(), -1) {
		results[m[2]] = m[1]
	}
	missing := false
	for _, name := range inVM {
		if results[name] != "PASS" {
			t.Errorf("%s in the VM: %s", name, cmp.Or(results[name], "did not run"))
			missing = missing || results[name] == ""
		}
	}
	if missing {
		tail := out.String()
		tail = tail[max(0, len(tail)-1500):]
		t.Logf("the end of the VM's output, quoted: %q", tail)
	}
	if err != nil {
		t.Errorf("ferry-lab vm: %v", err)
	}
}

// build makes what the VM runs (it sees this machine's files): the binaries with failpoints,
// as the e2e package builds them, and the e2e test binary.
func build(t *testing.T, root, bin string) {
	t.Helper()
	for _, c := range [][]string{
		{"build", "-tags", "failpoints", "-o", bin + "/", "./cmd/ferry", "./cmd/ferry-receiver", "./cmd/ferry-lab"},
		{"build", "-o", filepath.Join(bin, "ferry-workload"), "./lab/workload"},
		{"test", "-c", "-o", filepath.Join(bin, "e2e.test"), "./e2e"},
	} {
		cmd := exec.Command(goBin(), c...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// lineLogger passes the VM's output to the test log as it comes.
type lineLogger struct{ t *testing.T }

func (l lineLogger) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.t.Logf("vm| %s", line)
	}
	return len(p), nil
}
