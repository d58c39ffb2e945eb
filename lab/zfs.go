package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
