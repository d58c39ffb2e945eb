package wire

import (
	"encoding/json"
	"time"
)

// Message types on the control channel. Each request gets exactly one reply of the same type.
const (
	TypeHello     = "hello"
	TypePreflight = "preflight"
	TypePrepare   = "prepare"
	TypeRestore   = "restore"
	TypeCommit    = "commit"
	TypeAbort     = "abort"
	TypeStream    = "stream" // first message of a bulk stream
)

// Feature names exchanged in Hello. The effective set is the intersection.
const (
	FeatureFSRsync      = "fs:rsync"
	FeatureImagesSFTP   = "images:sftp"
	FeatureStreamLocal  = "streams:unix"
	FeatureCommitFrozen = "commit:frozen" // target holds the restored copy frozen until COMMIT
)

// Hello opens the control channel, in both directions.
type Hello struct {
	Protocol int      `json:"protocol"`
	Version  string   `json:"version"`
	Host     string   `json:"host"`
	Features []string `json:"features"`
	// Set by the target only:
	StreamSocket string `json:"stream_socket,omitempty"` // unix socket for bulk streams
	StreamToken  string `json:"stream_token,omitempty"`  // proves a stream belongs to this session
}

// Container is everything the target needs to recreate a container with the same identity:
// containerd metadata plus the OCI spec, verbatim.
type Container struct {
	Namespace      string            `json:"namespace"`
	ID             string            `json:"id"`
	Image          string            `json:"image"`
	ImageDigest    string            `json:"image_digest,omitempty"` // target descriptor digest of the image
	Labels         map[string]string `json:"labels,omitempty"`
	Runtime        string            `json:"runtime"`
	RuntimeOptions *Any              `json:"runtime_options,omitempty"`
	Snapshotter    string            `json:"snapshotter"`
	SnapshotKey    string            `json:"snapshot_key"`
	Spec           json.RawMessage   `json:"spec"`
	Extensions     map[string]Any    `json:"extensions,omitempty"`
}

// Any is a protobuf Any (containerd's typeurl) carried as type URL + bytes.
type Any struct {
	TypeURL string `json:"type_url"`
	Value   []byte `json:"value"`
}

// Problem is one reason a preflight refuses, in words an operator can act on.
type Problem struct {
	Code    string `json:"code"`    // errdefs code: conflict, unsupported, precondition, not_found
	Message string `json:"message"` // what is wrong
	Hint    string `json:"hint,omitempty"`
}

// HostFacts describes one side's capabilities (for preflight, `ferry check` and `auto`).
type HostFacts struct {
	Host          string `json:"host"`
	Kernel        string `json:"kernel"`
	CRIUVersion   int    `json:"criu_version"` // e.g. 40101
	CRIUCheck     string `json:"criu_check"`   // "" when `criu check` passes, else its complaint
	SoftDirty     bool   `json:"soft_dirty"`
	Userfaultfd   bool   `json:"userfaultfd"`
	Rsync         string `json:"rsync"` // version, "" when missing
	FreeBytes     uint64 `json:"free_bytes"`
	ContainerdVer string `json:"containerd"`
}

// PreflightRequest asks the target whether it can take the container. It changes nothing.
type PreflightRequest struct {
	MigrationID string    `json:"migration_id"`
	Container   Container `json:"container"`
	Source      HostFacts `json:"source"`
	ImageBytes  uint64    `json:"image_bytes"` // checkpoint size estimate (memory in use)
	FSBytes     uint64    `json:"fs_bytes"`    // writable layer size
}

// PreflightReply lists every problem found (empty: go ahead).
type PreflightReply struct {
	Target   HostFacts `json:"target"`
	Problems []Problem `json:"problems,omitempty"`
}

// PrepareRequest creates the container (metadata + writable layer, no task) on the target.
type PrepareRequest struct {
	MigrationID string    `json:"migration_id"`
	Container   Container `json:"container"`
	Mounts      []Mount   `json:"mounts"`
}

// Mount is one piece of the container's filesystem and the driver moving it.
type Mount struct {
	Name   string `json:"name"`   // "rootfs" for the writable layer
	Driver string `json:"driver"` // "rsync"
}

// PrepareReply confirms.
type PrepareReply struct{}

// FileSum is one transferred file and its checksum.
type FileSum struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// RestoreRequest restores the task from the transferred images. On success the task exists and is
// frozen (READY): it runs only after COMMIT.
type RestoreRequest struct {
	MigrationID string    `json:"migration_id"`
	Images      []FileSum `json:"images"`
}

// RestoreReply reports READY.
type RestoreReply struct {
	PID           uint32        `json:"pid"`
	RestoreTime   time.Duration `json:"restore_time"` // CRIU restore as seen by the target
	PagesRestored uint64        `json:"pages_restored"`
	ForkingTime   time.Duration `json:"forking_time"`
}

// CommitRequest tells the target the source copy is gone: run the restored task.
type CommitRequest struct {
	MigrationID string `json:"migration_id"`
}

// CommitReply confirms the task is running on the target.
type CommitReply struct {
	ResumeTime time.Duration `json:"resume_time"`
}

// AbortRequest tells the target to remove everything of this migration.
type AbortRequest struct {
	MigrationID string `json:"migration_id"`
	Reason      string `json:"reason"`
}

// AbortReply confirms the target is clean.
type AbortReply struct{}

// StreamHeader opens a bulk stream.
type StreamHeader struct {
	Token string `json:"token"`
	Kind  string `json:"kind"` // StreamRsync, StreamImages
	Name  string `json:"name"` // mount name for rsync
	// Args are the arguments rsync asks to run on the server side, checked by the receiver.
	Args []string `json:"args,omitempty"`
}

// Stream kinds.
const (
	StreamRsync  = "rsync"
	StreamImages = "images" // sftp, confined to the migration's image directory
	StreamZFS    = "zfs"    // a zfs send stream; the target answers with a message once received
)
