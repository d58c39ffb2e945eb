package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// Migration states on the target, in order. Only Committed is final-success; a migration that is
// aborted has no journal left at all (its directory is removed with everything else).
const (
	StatePrepared  = "prepared"  // container created (no task), receiving files
	StateRestoring = "restoring" // CRIU restore running
	StateReady     = "ready"     // restored and frozen: waiting for COMMIT
	StateCommitted = "committed" // COMMIT received and recorded: the target copy is the one
)

// Undo kinds, executed in reverse order of registration.
const (
	undoDir         = "dir"          // remove the migration's directory
	undoContainer   = "container"    // remove a container this migration created
	undoFile        = "file"         // remove a file (the session's stream socket)
	undoPath        = "path"         // remove a directory the migration created (a volume's)
	undoClear       = "clear"        // empty a directory that was empty before (a volume's)
	undoZFSDestroy  = "zfs-destroy"  // destroy a dataset the migration received
	undoZFSRollback = "zfs-rollback" // roll a base dataset back to the snapshot it had
	undoZFSUnmount  = "zfs-unmount"  // unmount a dataset mounted for the restore
	undoImage       = "image"        // delete an image the migration imported
	undoNetns       = "netns"        // delete a network namespace the migration created
)

// Undo is one persisted undo step.
type Undo struct {
	Kind      string `json:"kind"`
	Path      string `json:"path,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	ID        string `json:"id,omitempty"`
	// Intent is when the container was about to be created: a container created before that is
	// someone else's, and undo leaves it alone.
	Intent time.Time `json:"intent,omitempty"`
}

// Journal is the receiver's durable record of one migration: its state and the undo steps,
// written (and fsynced) before each change it describes. The holder of its lock (flock on the
// migration directory) is the only one allowed to change the migration; `ferry-receiver abort` takes the lock
// after a dead receiver and replays the undo steps.
type Journal struct {
	path  string
	lock  *os.File  // the migration directory, flocked
	State string    `json:"state"`
	ID    string    `json:"id"`
	Since time.Time `json:"since"`
	Undo  []Undo    `json:"undo"`
}

// ValidMigrationID checks an id received from the source.
func ValidMigrationID(id string) error { return wire.ValidMigrationID(id) }

func migrationDir(stateDir, id string) string { return filepath.Join(stateDir, "migrations", id) }

// createJournal starts a journal for a new migration (its directory must not exist) and locks it.
func createJournal(stateDir, id string) (*Journal, error) {
	if err := ValidMigrationID(id); err != nil {
		return nil, err
	}
	dir := migrationDir(stateDir, id)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("migration %s already exists on this host: %w", id, errdefs.ErrConflict)
		}
		return nil, err
	}
	j := &Journal{path: filepath.Join(dir, "journal.json"), ID: id, State: StatePrepared, Since: time.Now()}
	d, err := os.Open(dir)
	if err != nil {
		_ = os.Remove(dir)
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		_ = os.Remove(dir)
		return nil, err
	}
	j.lock = d
	// The directory itself is the first thing to undo (so it is removed last).
	j.Undo = []Undo{{Kind: undoDir, Path: dir}}
	return j, j.save()
}

// openJournal opens and locks an existing journal, waiting up to wait for a live receiver to
// release it. It returns errdefs.ErrNotFound when there is no such migration (anymore).
func openJournal(stateDir, id string, wait time.Duration) (*Journal, error) {
	if err := ValidMigrationID(id); err != nil {
		return nil, err
	}
	dir := migrationDir(stateDir, id)
	p := filepath.Join(dir, "journal.json")
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no migration %s on this host: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("migration %s is held by a running ferry-receiver: %w", id, errdefs.ErrTransient)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The holder may have finished (and removed everything) while we waited.
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) == nil && st.Nlink == 0 {
		f.Close()
		return nil, fmt.Errorf("migration %s was cleaned up: %w", id, errdefs.ErrNotFound)
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		// Created but never written: nothing but the directory to undo.
		return &Journal{path: p, lock: f, ID: id, Undo: []Undo{{Kind: undoDir, Path: dir}}}, nil
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	j := &Journal{path: p, lock: f}
	if err := json.Unmarshal(b, j); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", p, err)
	}
	return j, nil
}

// save rewrites the journal durably: write a temp file, fsync, rename over, fsync the directory.
func (j *Journal) save() error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return err
	}
	return j.lock.Sync()
}

// set records a new state.
func (j *Journal) set(state string) error {
	j.State = state
	return j.save()
}

// add records an undo step before its change is made.
func (j *Journal) add(u Undo) error {
	j.Undo = append(j.Undo, u)
	return j.save()
}

// drop forgets the last undo step (its change did not happen).
func (j *Journal) drop() error {
	j.Undo = j.Undo[:len(j.Undo)-1]
	return j.save()
}

// Close releases the lock.
func (j *Journal) Close() error {
	if j.lock == nil {
		return nil
	}
	err := j.lock.Close()
	j.lock = nil
	return err
}

// readJournal reads a journal without taking its lock (the file is replaced atomically).
func readJournal(stateDir, id string) (*Journal, error) {
	b, err := os.ReadFile(filepath.Join(migrationDir(stateDir, id), "journal.json"))
	if err != nil {
		return nil, err
	}
	var j Journal
	return &j, json.Unmarshal(b, &j)
}
