package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// upZFS starts the host's zfs-fuse daemon, creates its pool (a sparse file) and ferry's parent
// dataset, and points ferry at it in /etc/ferry/ferry.toml.
func upZFS(ctx context.Context, h Host) error {
	img := filepath.Join(h.dir(), "tank.img")
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(poolSize); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := startDaemon(h, "zfs-fuse", "zfs-fuse", "--no-daemon", "--no-kstat-mount", "--pidfile", "/run/zfs/zfs-fuse.pid"); err != nil {
		return err
	}
	if err := waitFor(ctx, 20*time.Second, func() error { return runIn(ctx, h, "/usr/sbin/zpool", "list") }); err != nil {
		return fmt.Errorf("zfs-fuse does not answer: %w", err)
	}
	steps := [][]string{
		{"/usr/sbin/zpool", "create", "-m", "none", Pool, img},
		{"/usr/sbin/zfs", "create", ZFSParent},
		{"/usr/sbin/zfs", "create", ZFSVols},
	}
	for _, s := range steps {
		if err := runIn(ctx, h, s...); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf("# ferry-lab host %s\nzfs_parent = %q\n", h.Name, ZFSParent)
	return os.WriteFile(filepath.Join(h.rootDir(), "etc/ferry/ferry.toml"), []byte(conf), 0o644)
}

// ZFSEnabled reports whether the lab was brought up with --zfs.
func ZFSEnabled() bool {
	st, err := readState()
	return err == nil && st.ZFS
}

// makeVolume creates a lab volume on this host: spec is PATH or PATH:zfs, PATH under /srv (each
// lab host has its own /srv, so the same path exists on every host).
func makeVolume(ctx context.Context, name, spec string) (path, dataset string, err error) {
	path, kind, _ := strings.Cut(spec, ":")
	if !strings.HasPrefix(filepath.Clean(path), "/srv/") {
		return "", "", fmt.Errorf("lab volumes live under /srv (each host has its own): %q", path)
	}
	path = filepath.Clean(path)
	switch kind {
	case "":
		return path, "", os.MkdirAll(path, 0o755)
	case "zfs":
		dataset = ZFSVols + "/" + strings.NewReplacer("/", "-", ".", "-").Replace(strings.TrimPrefix(path, "/srv/"))
		// A database-like record size: the workload rewrites 4 KiB blocks, and a bigger record
		// would make each such write dirty (and resend) 128 KiB.
		out, err := exec.CommandContext(ctx, "zfs", "create", "-o", "recordsize=4k", "-o", "mountpoint="+path, dataset).CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("zfs create %s (is the lab up with --zfs?): %w: %s", dataset, err, strings.TrimSpace(string(out)))
		}
		return path, dataset, nil
	}
	return "", "", fmt.Errorf("volume %q: the kind after ':' can only be zfs", spec)
}
