package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CRIU 4.2 logs a failed RLIMIT_NOFILE raise as an error and carries on; a failure's
// explanation must lead with the real error, not that line.
func TestLogErrorsSkipsBenignLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dump.log")
	log := "(00.06) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n" +
		"(00.10) Info: something\n" +
		"(00.14) Error (criu/page-xfer.c:191): page-xfer: Can't write pages to socket: Broken pipe\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := LogErrors(p)
	if strings.Contains(got, "RLIMIT_NOFILE") || !strings.Contains(got, "Broken pipe") {
		t.Fatalf("LogErrors = %q", got)
	}
	orig := errors.New("operation failed (msg:Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted err:0)")
	err := criuFailure(orig)
	if strings.Contains(err.Error(), "RLIMIT") || !errors.Is(err, orig) {
		t.Fatalf("criuFailure = %v (wraps original: %v)", err, errors.Is(err, orig))
	}
	other := errors.New("operation failed (msg:Error (criu/sk-inet.c:1): boom err:0)")
	if criuFailure(other) != other {
		t.Fatal("criuFailure changed a real error")
	}
}

// The figures of pre-copy rounds as CRIU 4.2's swrk reports them (running totals; from a VM
// run) give back each round's own.
func TestDumpStatsSince(t *testing.T) {
	r1 := &DumpStats{PagesScanned: 16805, PagesWritten: 16805}
	r2 := &DumpStats{PagesScanned: 33663, PagesWritten: 19224, PagesSkipped: 14439}
	r3 := &DumpStats{PagesScanned: 50529, PagesWritten: 19854, PagesSkipped: 30675}
	if got := r2.since(r1); got.PagesWritten != 2419 || got.PagesSkipped != 14439 || got.PagesScanned != 16858 {
		t.Errorf("round 2: %+v", got)
	}
	if got := r3.since(r2); got.PagesWritten != 630 || got.PagesSkipped != 16236 {
		t.Errorf("round 3: %+v", got)
	}
	// Fresh counters (CRIU 4.1): a smaller count means nothing is subtracted.
	fresh := &DumpStats{PagesScanned: 16858, PagesWritten: 2419, PagesSkipped: 14439}
	if got := fresh.since(r1); got != *fresh {
		t.Errorf("fresh counters changed: %+v", got)
	}
}
