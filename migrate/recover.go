package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ferry-project/ferry/transport/wire"
)

// Pending is a migration whose COMMIT went out but whose outcome the source could not learn.
// The source copy stays frozen; this record, on the source's disk, is what `ferry recover`
// (or the operator) resolves it from.
type Pending struct {
	ID         string    `json:"id"`
	Container  string    `json:"container"`
	Namespace  string    `json:"namespace"`
	Source     string    `json:"source"`
	Target     string    `json:"target"`     // the target as the operator gave it ([user@]host[:port])
	Checkpoint string    `json:"checkpoint"` // the local checkpoint directory
	Since      time.Time `json:"since"`
}

// PendingDir is where the records are kept under a state directory.
func PendingDir(stateDir string) string { return filepath.Join(stateDir, "pending") }

func writePending(stateDir string, p Pending) error {
	dir := PendingDir(stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, p.ID+".json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, p.ID+".json"))
}

// ListPending returns the unresolved migrations recorded under stateDir, oldest first.
func ListPending(stateDir string) ([]Pending, error) {
	files, err := filepath.Glob(filepath.Join(PendingDir(stateDir), "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Pending
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var p Pending
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if wire.ValidMigrationID(p.ID) != nil || filepath.Base(f) != p.ID+".json" {
			return nil, fmt.Errorf("%s: not a pending-migration record", f)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// TargetAdmin is what Recover needs of the target: its decision, and a way to make sure it
// never commits. Both must work without the migration's own session (which is gone).
type TargetAdmin interface {
	Status(ctx context.Context, id string) (string, error)
	Abort(ctx context.Context, req wire.AbortRequest) (string, error)
}

// Recovery is what Recover found and did.
type Recovery struct {
	ID          string   `json:"id"`
	Container   string   `json:"container"`
	Target      string   `json:"target"`
	TargetState string   `json:"target_state"` // what the target said (receiver states, or "absent")
	Outcome     string   `json:"outcome"`      // committed (runs on the target) or rolled_back (runs on the source)
	Actions     []string `json:"actions"`
}

// Recover resolves a pending migration: it asks the target what it decided and finishes that
// decision on both sides. A target that committed keeps the container and the source copy is
// removed; any other state is aborted on the target (which then can never commit) and the
// source copy resumes. Nothing is decided without the target's answer.
func Recover(ctx context.Context, p Pending, src Source, tgt TargetAdmin, stateDir string) (*Recovery, error) {
	r := &Recovery{ID: p.ID, Container: p.Container, Target: p.Target}
	st, err := tgt.Status(ctx, p.ID)
	if err != nil {
		return r, fmt.Errorf("ask %s about migration %s: %w (nothing changed; the source copy stays frozen)", p.Target, p.ID, err)
	}
	r.TargetState = st
	committed := st == "committed"
	if !committed {
		got, err := tgt.Abort(ctx, wire.AbortRequest{MigrationID: p.ID, Reason: "ferry recover"})
		switch {
		case got == "committed": // it committed after all
			committed = true
		case err != nil:
			return r, fmt.Errorf("abort migration %s on %s (it is %s): %w (nothing changed on the source; it stays frozen)", p.ID, p.Target, st, err)
		default:
			r.Actions = append(r.Actions, fmt.Sprintf("aborted the migration on %s (it was %s; it can no longer commit)", p.Target, st))
		}
	}
	if committed {
		r.Outcome = OutcomeCommitted
		if err := src.Retire(ctx, p.Container); err != nil {
			return r, fmt.Errorf("%s committed; removing the frozen source copy failed: %w", p.Target, err)
		}
		r.Actions = append(r.Actions, fmt.Sprintf("%s had committed: removed the frozen source copy of %s", p.Target, p.Container))
	} else {
		r.Outcome = OutcomeRolledBack
		if err := src.Thaw(ctx, p.Container); err != nil {
			return r, fmt.Errorf("resume %s on the source: %w", p.Container, err)
		}
		r.Actions = append(r.Actions, fmt.Sprintf("resumed %s on the source", p.Container))
	}
	var errs []error
	if p.Checkpoint != "" {
		errs = append(errs, os.RemoveAll(p.Checkpoint))
	}
	errs = append(errs, os.Remove(filepath.Join(PendingDir(stateDir), p.ID+".json")))
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("resolved (%s), but cleaning up on the source failed: %w", r.Outcome, err)
	}
	r.Actions = append(r.Actions, "removed the local checkpoint and the pending record")
	return r, nil
}
