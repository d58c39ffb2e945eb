package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferry-project/ferry/transport/wire"
)

type fakeAdmin struct {
	status    string
	statusErr error
	abortGot  string
	abortErr  error
	aborted   bool
}

func (a *fakeAdmin) Status(context.Context, string) (string, error) { return a.status, a.statusErr }
func (a *fakeAdmin) Abort(context.Context, wire.AbortRequest) (string, error) {
	a.aborted = true
	return a.abortGot, a.abortErr
}

// TestRecover: every answer the target can give, and what the source then does. Nothing is
// decided without an answer.
func TestRecover(t *testing.T) {
	for _, c := range []struct {
		name      string
		admin     fakeAdmin
		outcome   string
		calls     []string // on the source
		aborted   bool
		err       bool
		keepsFile bool
	}{
		{name: "committed", admin: fakeAdmin{status: "committed"}, outcome: OutcomeCommitted, calls: []string{"retire"}},
		{name: "ready: aborted, source resumes", admin: fakeAdmin{status: "ready", abortGot: "aborted"}, outcome: OutcomeRolledBack, calls: []string{"thaw"}, aborted: true},
		{name: "absent: source resumes", admin: fakeAdmin{status: "absent", abortGot: "absent"}, outcome: OutcomeRolledBack, calls: []string{"thaw"}, aborted: true},
		{name: "committed while we asked", admin: fakeAdmin{status: "ready", abortGot: "committed", abortErr: errors.New("committed")}, outcome: OutcomeCommitted, calls: []string{"retire"}, aborted: true},
		{name: "target unreachable", admin: fakeAdmin{statusErr: errors.New("no route")}, err: true, keepsFile: true},
		{name: "abort fails", admin: fakeAdmin{status: "ready", abortErr: errors.New("lock held")}, err: true, aborted: true, keepsFile: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ckpt := filepath.Join(dir, "ckpt")
			if err := os.MkdirAll(ckpt, 0o700); err != nil {
				t.Fatal(err)
			}
			p := Pending{ID: "m-0123456789abcdef", Container: "web", Namespace: "default", Source: "a", Target: "b", Checkpoint: ckpt, Since: time.Now()}
			if err := writePending(dir, p); err != nil {
				t.Fatal(err)
			}
			if l, err := ListPending(dir); err != nil || len(l) != 1 || l[0].ID != p.ID {
				t.Fatalf("ListPending: %v %v", l, err)
			}
			src := &fakeSource{calls: &calls{}}
			admin := c.admin
			r, err := Recover(context.Background(), p, src, &admin, dir)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if !c.err && r.Outcome != c.outcome {
				t.Errorf("outcome %q, want %q (actions %v)", r.Outcome, c.outcome, r.Actions)
			}
			if !slices.Equal(src.log, c.calls) {
				t.Errorf("source calls %v, want %v", src.log, c.calls)
			}
			if admin.aborted != c.aborted {
				t.Errorf("aborted on the target: %v, want %v", admin.aborted, c.aborted)
			}
			l, _ := ListPending(dir)
			_, cerr := os.Stat(ckpt)
			if kept := len(l) == 1 && cerr == nil; kept != c.keepsFile {
				t.Errorf("pending record and checkpoint kept: %v, want %v", kept, c.keepsFile)
			}
		})
	}
}

// TestListPendingRejectsForgedRecords: a record whose id is not a migration id (a path) is an
// error, not something to act on.
func TestListPendingRejectsForgedRecords(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(PendingDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(PendingDir(dir), "x.json"), []byte(`{"id":"../../etc"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListPending(dir); err == nil {
		t.Fatal("a forged record was accepted")
	}
}
