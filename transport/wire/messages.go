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
	TypeImage     = "image"    // which image blobs the target lacks (before shipping them)
	TypeResident  = "resident" // post-copy: wait until every page is on the target
	TypeStream    = "stream"   // first message of a bulk stream
	TypeFailures  = "failures" // what went wrong on the target's side of the streams
	TypeFacts     = "facts"    // what the target supports, for `ferry check` (changes nothing)
)

// Feature names exchanged in Hello. The effective set is the intersection.
const (
	FeatureFSRsync      = "fs:rsync"
	FeatureFSZFS        = "fs:zfs"
	FeatureImagesSFTP   = "images:sftp"
	FeatureStreamLocal  = "streams:unix"
	FeatureCommitFrozen = "commit:frozen" // target holds the restored copy frozen until COMMIT
	FeatureFacts        = "facts"         // the target answers TypeFacts
	// FeatureRsyncItemize: the target's rsync server takes --log-format=%i, so a final sync can
	// learn which files it sent and recheck only the others.
	FeatureRsyncItemize = "rsync:itemize"
)

// FactsRequest asks the target what it supports, with no container in view (ferry check).
type FactsRequest struct {
	Namespace string    `json:"namespace"`
	Source    HostFacts `json:"source"` // its CPUInfo lets the target check CPU compatibility
}

// FactsReply is the target's side of `ferry check`.
type FactsReply struct {
	Target HostFacts `json:"target"`
	// ZFSParent is the parent dataset volumes land under ("" when none is configured); ZFS says
	// why ZFS volumes cannot be received ("" when they can).
	ZFSParent string `json:"zfs_parent,omitempty"`
	ZFS       string `json:"zfs,omitempty"`
	// CPU is the CPU incompatibility with the source (nil: compatible, or not checkable: see
	// Problems).
	CPU *Problem `json:"cpu,omitempty"`
	// Problems would refuse any migration to this target (criu check failing, no containerd…).
	Problems []Problem `json:"problems,omitempty"`
}

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
	// Network is the container's network namespace as the source found it, when the container
	// joins a named one (a CNI-style attachment): the target recreates it before the restore.
	Network *NetAttachment `json:"network,omitempty"`
}

// NetAttachment is a named network namespace with veths on host bridges.
type NetAttachment struct {
	Netns      string         `json:"netns"` // /run/netns/NAME
	Interfaces []NetInterface `json:"interfaces"`
	Routes     []NetRoute     `json:"routes,omitempty"`
}

// NetInterface is one veth: its name, MAC and MTU inside, its addresses (CIDR), and the bridge
// its host side is on.
type NetInterface struct {
	Name   string   `json:"name"`
	MAC    string   `json:"mac"`
	MTU    int      `json:"mtu"`
	Addrs  []string `json:"addrs"`
	Bridge string   `json:"bridge"`
}

// NetRoute is a route inside the namespace (not the ones its addresses imply).
type NetRoute struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
	Dev     string `json:"dev,omitempty"`
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
	CRIUVersion   int    `json:"criu_version"`        // e.g. 40101
	CRIUCheck     string `json:"criu_check"`          // "" when `criu check` passes, else its complaint
	SoftDirty     bool   `json:"soft_dirty"`          // criu check --feature mem_dirty_track: pre-copy possible
	Userfaultfd   bool   `json:"userfaultfd"`         // criu check --feature uffd-noncoop: lazy restore possible
	LazyDump      string `json:"lazy_dump,omitempty"` // why a lazy (post-copy) dump cannot run here ("" if it can)
	Rsync         string `json:"rsync"`               // version, "" when missing
	FreeBytes     uint64 `json:"free_bytes"`
	ContainerdVer string `json:"containerd"`
	// CPUInfo is `criu cpuinfo dump`'s image of this host's CPU (the source sends it; the target
	// runs `criu cpuinfo check` on it); CPUInfoError says why there is none.
	CPUInfo      []byte `json:"cpuinfo,omitempty"`
	CPUInfoError string `json:"cpuinfo_error,omitempty"`
}

// PreflightRequest asks the target whether it can take the container. It changes nothing.
type PreflightRequest struct {
	MigrationID string    `json:"migration_id"`
	Container   Container `json:"container"`
	Source      HostFacts `json:"source"`
	ImageBytes  uint64    `json:"image_bytes"` // checkpoint size estimate (memory in use)
	FSBytes     uint64    `json:"fs_bytes"`    // writable layer size
	Volumes     []Volume  `json:"volumes,omitempty"`
}

// Volume is a host directory bind-mounted into the container. It lands on the target at the
// same path.
type Volume struct {
	Name        string     `json:"name"` // vol-1, vol-2… in the spec's order
	Path        string     `json:"path"`
	Destination string     `json:"destination"` // inside the container
	Bytes       uint64     `json:"bytes"`
	ZFS         *ZFSVolume `json:"zfs,omitempty"` // set when Path is a mounted dataset's mountpoint
}

// ZFSVolume is the dataset behind a volume on the source.
type ZFSVolume struct {
	Dataset   string        `json:"dataset"`
	Snapshots []ZFSSnapshot `json:"snapshots"` // oldest first
}

// ZFSSnapshot is a snapshot and its guid (its identity across send and receive).
type ZFSSnapshot struct {
	Name string `json:"name"` // dataset@snapshot
	GUID string `json:"guid"`
}

// VolumeTarget is what the target can do for one volume.
type VolumeTarget struct {
	Name      string `json:"name"`
	ZFS       bool   `json:"zfs"`                  // it can receive this volume with zfs
	ZFSReason string `json:"zfs_reason,omitempty"` // why not
	Dataset   string `json:"dataset,omitempty"`    // where it would receive
	BaseGUID  string `json:"base_guid,omitempty"`  // newest snapshot both hosts have ("": full send)
}

// PreflightReply lists every problem found (empty: go ahead).
type PreflightReply struct {
	Target       HostFacts      `json:"target"`
	Problems     []Problem      `json:"problems,omitempty"`
	Volumes      []VolumeTarget `json:"volumes,omitempty"`
	ImageMissing bool           `json:"image_missing,omitempty"` // the source must ship the image's content
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType string `json:"media_type"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// ImageRequest starts shipping an image the target lacks: its target descriptor and every blob
// it needs on this platform. The target creates the image once the blobs have arrived.
type ImageRequest struct {
	MigrationID string       `json:"migration_id"`
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	Snapshotter string       `json:"snapshotter"`
	Target      Descriptor   `json:"target"`
	Blobs       []Descriptor `json:"blobs"`
}

// ImageReply lists the digests of the blobs to send.
type ImageReply struct {
	Missing []string `json:"missing,omitempty"`
}

// PrepareRequest creates the container (metadata + writable layer, no task) on the target.
type PrepareRequest struct {
	MigrationID string    `json:"migration_id"`
	Container   Container `json:"container"`
	Mounts      []Mount   `json:"mounts"`
}

// Mount is one piece of the container's filesystem and the driver moving it: the plan.
type Mount struct {
	Name     string `json:"name"`                // "rootfs" (the writable layer) or a volume's name
	Driver   string `json:"driver"`              // "rsync" or "zfs"
	Path     string `json:"path,omitempty"`      // volumes: the host path, the same on both hosts
	Reason   string `json:"reason,omitempty"`    // why this driver (and why not a better one)
	Dataset  string `json:"dataset,omitempty"`   // zfs: the target dataset receiving it
	BaseGUID string `json:"base_guid,omitempty"` // zfs: the shared snapshot the first send starts from
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
	// Pages is what the dump sent to the target's page server (bytes, checksum), nil when the
	// pages came as image files.
	Pages *StreamSum `json:"pages,omitempty"`
	// PreRounds (pre-copy) are the pre-dumps' page streams ("pre-1", …), in order.
	PreRounds []StreamSum `json:"pre_rounds,omitempty"`
	// Lazy: post-copy. The pages stay on the source; the target restores with lazy pages and
	// its lazy-pages daemon fetches them through the "lazy" stream.
	Lazy bool `json:"lazy,omitempty"`
}

// ResidentRequest asks the target to answer once its lazy-pages daemon has every page.
type ResidentRequest struct {
	MigrationID string `json:"migration_id"`
}

// ResidentReply says how long after the restore the last page arrived.
type ResidentReply struct {
	AfterRestore time.Duration `json:"after_restore"`
}

// StreamSum is what went through a stream one way: bytes and a checksum ("crc32c:<hex>").
type StreamSum struct {
	Bytes    int64  `json:"bytes"`
	Checksum string `json:"checksum"`
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
	// NetworkHook is what the target's network hook did after the commit: "" (none ran), "ok",
	// or its failure (the migration stands; routes may need a hand).
	NetworkHook string `json:"network_hook,omitempty"`
}

// FailuresRequest asks what failed on the target's side of this migration's streams (a
// full disk under rsync, a page server's write error): the source sees only a broken stream.
type FailuresRequest struct {
	MigrationID string `json:"migration_id"`
}

// FailuresReply lists them, oldest first, each one sentence.
type FailuresReply struct {
	Failures []string `json:"failures"`
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
	// Compress names the compression of everything after the acknowledgement, both ways
	// (CompressZstd: transport/zstream); empty is none.
	Compress string `json:"compress,omitempty"`
}

// Stream compressions.
const (
	CompressNone = "none"
	CompressZstd = "zstd"
)

// Stream kinds.
const (
	StreamRsync  = "rsync"
	StreamImages = "images" // sftp, confined to the migration's image directory
	StreamZFS    = "zfs"    // a zfs send stream; the target answers with a message once received
	StreamBlobs  = "blobs"  // image content (transport/blobstream); the target answers once imported
	StreamPages  = "pages"  // CRIU's page server protocol, from the dump to a page server on the target
	StreamLazy   = "lazy"   // post-copy: the target's lazy-pages daemon fetching from the source's lazy dump
	StreamProbe  = "probe"  // link probe: the target counts and discards, then answers
)
