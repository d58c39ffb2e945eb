package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/internal/mountinfo"
	"github.com/ferry-project/ferry/network"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/snapshot/zfs"
)

// undo runs a journal's undo steps in reverse, persisting progress, then releases it.
func undo(ctx context.Context, cfg Config, j *Journal, log *slog.Logger) error {
	defer j.Close()
	var errs []error
	for i := len(j.Undo) - 1; i >= 0; i-- {
		u := j.Undo[i]
		var err error
		switch u.Kind {
		case undoContainer:
			err = removeOwnContainer(ctx, cfg, u)
		case undoDir:
			err = removeTree(u.Path)
		case undoFile:
			if err = os.Remove(u.Path); errors.Is(err, os.ErrNotExist) {
				err = nil
			}
		case undoPath:
			err = removeTree(u.Path)
		case undoClear:
			err = clearDir(u.Path)
		case undoZFSDestroy:
			err = zfs.Destroy(u.Path)
		case undoZFSRollback:
			err = zfs.RollbackTo(u.Path)
		case undoZFSUnmount:
			err = zfs.Park(u.Path)
		case undoImage:
			err = removeOwnImage(ctx, cfg, u)
		case undoNetns:
			err = network.Remove(ctx, u.Path)
		default:
			err = fmt.Errorf("unknown undo step %q", u.Kind)
		}
		if err != nil {
			log.Error("undo step failed", "step", u.Kind, "err", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", u.Kind, err))
			continue
		}
		log.Info("undone", "step", u.Kind, "id", u.ID, "path", u.Path)
		j.Undo = j.Undo[:i]
		if u.Kind != undoDir && len(errs) == 0 {
			if err := j.save(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeOwnContainer removes the container the migration created, and only that one: a
// container created before the intent belongs to someone else.
func removeOwnContainer(ctx context.Context, cfg Config, u Undo) error {
	rt, err := runtime.Connect(ctx, cfg.ContainerdAddress, u.Namespace)
	if err != nil {
		return err
	}
	defer rt.Close()
	created, err := rt.CreatedAt(ctx, u.ID)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if created.Before(u.Intent) {
		return nil
	}
	return rt.Remove(ctx, u.ID)
}

// removeOwnImage deletes the image the migration imported, and only that one.
func removeOwnImage(ctx context.Context, cfg Config, u Undo) error {
	rt, err := runtime.Connect(ctx, cfg.ContainerdAddress, u.Namespace)
	if err != nil {
		return err
	}
	defer rt.Close()
	created, err := rt.ImageCreatedAt(ctx, u.ID)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if created.Before(u.Intent) {
		return nil
	}
	// Another migration (a drain's) may have found it here and created its container from it.
	if inUse, err := rt.ImageInUse(ctx, u.ID); err != nil || inUse {
		return err
	}
	return rt.DeleteImage(ctx, u.ID)
}

// Abort undoes migration id on this host (for `ferry-receiver abort`): it waits for a live
// receiver to finish, then undoes what is left. A committed migration is refused; one that is
// already gone is not an error.
func Abort(ctx context.Context, cfg Config, id string) (string, error) {
	cfg.defaults()
	// A receiver killed before it had a migration to journal (in preflight) leaves only its
	// session socket: sweep those of dead receivers whatever this migration's state.
	sweepSockets(filepath.Join(cfg.RunDir, "sessions"))
	j, err := openJournal(cfg.StateDir, id, 90*time.Second)
	if errors.Is(err, errdefs.ErrNotFound) {
		return "absent", nil
	}
	if err != nil {
		return "", err
	}
	if j.State == StateCommitted {
		j.Close()
		return StateCommitted, fmt.Errorf("migration %s is committed on this host: %w", id, errdefs.ErrPrecondition)
	}
	if err := undo(ctx, cfg, j, cfg.Log); err != nil {
		return "", err
	}
	return "aborted", nil
}

// Status reports migration id's state on this host: a journal state, or "absent".
func Status(cfg Config, id string) (string, error) {
	cfg.defaults()
	if err := ValidMigrationID(id); err != nil {
		return "", err
	}
	j, err := readJournal(cfg.StateDir, id)
	if errors.Is(err, os.ErrNotExist) {
		return "absent", nil
	}
	if err != nil {
		return "", err
	}
	return j.State, nil
}

// removeTree removes dir and everything below it, first detaching what is mounted there: a
// criu that died mid-restore leaves its cgroup yard (cgroup filesystems) mounted in its work
// directory.
func removeTree(dir string) error {
	if err := mountinfo.Detach(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
