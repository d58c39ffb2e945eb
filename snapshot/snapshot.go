// Package snapshot moves the filesystem part of a container: its writable layer and, later, its
// volumes. Each piece (a Mount) is moved by a Driver chosen per mount.
package snapshot

import (
	"context"
	"time"

	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/wire"
)

// Mount is one piece of a container's filesystem.
type Mount struct {
	// Name identifies the mount to the target ("rootfs" is the writable layer, "vol-N" a volume).
	// The target maps names to its own paths: the source never names a target path.
	Name string
	// Source is the directory on the source host.
	Source string
	// Dataset is the ZFS dataset mounted at Source (zfs driver).
	Dataset string
	// Base is the source snapshot the target also has (same guid): the first send is incremental
	// from it. Empty: a full send (zfs driver).
	Base string
}

// Stats describe one sync.
type Stats struct {
	Bytes    int64         `json:"bytes"` // bytes carried over the link (both directions)
	Duration time.Duration `json:"duration"`
}

// Driver moves mounts from the source to the target. The migration drives it, on the source:
//
//   - Prepare runs once per mount before anything moves: it checks that the source side is what
//     the plan says (directory, dataset, base snapshot) and changes nothing.
//   - PreSync copies a mount while the container runs. It may run several times; each run
//     brings the target closer to the source. It must leave the source untouched.
//   - FinalSync runs exactly once per mount, while the container is frozen (no writer), and
//     leaves the target's copy identical to the source: content, hard links, ACLs, xattrs,
//     sparseness, device nodes, ownership (numeric ids).
//   - Commit runs after the migration committed: the driver drops what it kept only for this
//     move (and keeps what serves as the base of a later move, e.g. a ZFS snapshot).
//   - Abort runs on rollback at any point after the first sync: the driver removes what it made
//     on either host for this move. The target's copy itself belongs to the container the
//     target created and is removed with it.
//
// Every method is safe to call with a cancelled context only in the sense that it returns
// promptly; Abort is always called with a live context. Calls for different mounts may run
// concurrently (the final syncs of a migration do).
type Driver interface {
	Name() string
	Prepare(ctx context.Context, m Mount) error
	PreSync(ctx context.Context, m Mount) (Stats, error)
	FinalSync(ctx context.Context, m Mount) (Stats, error)
	Commit(ctx context.Context, m Mount) error
	Abort(ctx context.Context, m Mount) error
}

// StreamOpener opens bulk streams to the target (transport.Receiver implements it).
type StreamOpener interface {
	OpenStream(ctx context.Context, h wire.StreamHeader) (transport.Stream, error)
}
