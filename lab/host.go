package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CgroupExecCmd is the hidden ferry-lab subcommand that joins a host's cgroup (without entering
// its namespaces) and execs a command: used to create the host's namespaces.
const CgroupExecCmd = "__cgexec"

// HelperCmd is the hidden ferry-lab subcommand run inside a host for containerd work.
const HelperCmd = "__helper"

func selfPath() string {
	p, err := os.Executable()
	if err != nil {
		return "/proc/self/exe"
	}
	return p
}

// CgroupExec joins host name's cgroup and execs argv.
func CgroupExec(name string, argv []string) error {
	h, err := LookupHost(name)
	if err != nil {
		return err
	}
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	if err := joinCgroup(hs, h.cgroup()); err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

func upHost(ctx context.Context, hs []hierarchy, h Host, keys *labKeys) error {
	if err := makeCgroup(hs, h.cgroup()); err != nil {
		return err
	}
	for _, d := range privateDirs {
		if d.Tmpfs {
			continue
		}
		p := filepath.Join(h.rootDir(), d.Path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, d.Mode); err != nil {
			return err
		}
	}
	if err := keys.writeSSHFiles(h); err != nil {
		return err
	}
	if err := writeHostFiles(h); err != nil {
		return err
	}

	// Network: a veth from the switch's bridge to the host's eth0.
	steps := [][]string{
		{"ip", "netns", "add", h.netns()},
		{"ip", "-n", h.netns(), "link", "set", "lo", "up"},
		{"ip", "link", "add", h.vethOutside(), "netns", switchNS, "type", "veth", "peer", "name", "eth0", "netns", h.netns()},
		{"ip", "-n", switchNS, "link", "set", h.vethOutside(), "master", bridgeName, "up"},
		{"ip", "-n", h.netns(), "addr", "add", h.Addr.String() + "/24", "dev", "eth0"},
		{"ip", "-n", h.netns(), "link", "set", "eth0", "up"},
		{"ip", "-n", h.netns(), "route", "add", "default", "via", SwitchIP.String()},
	}
	steps = append(steps, hostNetSteps(h)...)
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}

	// Mount, UTS and cgroup namespaces, kept alive by bind mounts on files under RunDir.
	if err := os.MkdirAll(h.nsDir(), 0o755); err != nil {
		return err
	}
	for _, k := range []string{"mnt", "uts", "cgroup"} {
		if err := os.WriteFile(h.nsFile(k), nil, 0o644); err != nil {
			return err
		}
	}
	script, err := setupScript(hs, h)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, selfPath(), CgroupExecCmd, h.Name, "--",
		"nsenter", "--net="+h.netnsPath(), "--",
		"unshare", "--mount="+h.nsFile("mnt"), "--uts="+h.nsFile("uts"), "--cgroup="+h.nsFile("cgroup"),
		"--propagation", "private", "--", "/bin/sh", "-ec", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("create namespaces: %w: %s", err, strings.TrimSpace(string(out)))
	}

	// Daemons: containerd and sshd, each in the host's cgroup and namespaces.
	if err := startDaemon(h, "containerd", "containerd", "--config", filepath.Join(h.dir(), "containerd.toml")); err != nil {
		return err
	}
	if err := startDaemon(h, "sshd", "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(h.dir(), "sshd_config")); err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, func() error {
		return runIn(ctx, h, "test", "-S", "/run/containerd/containerd.sock")
	})
}

// startDaemon starts argv on h in the background, in its own session, logging to NAME.log.
func startDaemon(h Host, name string, argv ...string) error {
	logf, err := os.OpenFile(filepath.Join(h.dir(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := Command(h, argv...)
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(h.dir(), name+".pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// setupScript runs inside the host's fresh mount, UTS and cgroup namespaces (and its network
// namespace) and gives the host its own /sys, cgroup view and private directories.
func setupScript(hs []hierarchy, h Host) (string, error) {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	w("hostname %s", h.Name)
	// A sysfs of this network namespace, and cgroup hierarchies rooted at this cgroup namespace.
	w("umount -l /sys")
	w("mount -t sysfs -o nosuid,nodev,noexec sysfs /sys")
	unifiedOnly := len(hs) == 1 && hs[0].Mount == "/sys/fs/cgroup"
	if !unifiedOnly {
		w("mount -t tmpfs -o nosuid,nodev,noexec,mode=755 cgroup /sys/fs/cgroup")
	}
	for _, c := range hs {
		w("mkdir -p %s", c.Mount)
		if c.FSType == "cgroup2" {
			w("mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 %s", c.Mount)
		} else {
			w("mount -t cgroup -o nosuid,nodev,noexec,%s cgroup %s", c.Options, c.Mount)
		}
	}
	for _, d := range privateDirs {
		if d.Tmpfs {
			w("mkdir -p %s", d.Path) // under /run: in the host's new tmpfs
			w("mount -t tmpfs -o nosuid,nodev,mode=%o tmpfs %s", d.Mode, d.Path)
		} else {
			w("mount --bind %s %s", filepath.Join(h.rootDir(), d.Path), d.Path)
		}
	}
	w("mount --bind %s /etc/hosts", filepath.Join(h.dir(), "hosts"))
	return b.String(), nil
}

func writeHostFiles(h Host) error {
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	for _, o := range Hosts {
		fmt.Fprintf(&hosts, "%s\t%s\n", o.Addr, o.Name)
	}
	sshd := fmt.Sprintf(`# ferry-lab host %[1]s
ListenAddress %[2]s
Port 22
HostKey %[3]s/ssh_host_ed25519_key
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PrintMotd no
AllowStreamLocalForwarding yes
SetEnv PATH=%[4]s
Subsystem sftp internal-sftp
`, h.Name, h.Addr, h.dir(), HostPATH())
	containerd := `# ferry-lab host ` + h.Name + `
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "/run/containerd/containerd.sock"
`
	for name, data := range map[string]string{"hosts": hosts.String(), "sshd_config": sshd, "containerd.toml": containerd} {
		if err := os.WriteFile(filepath.Join(h.dir(), name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	// ferry's network hook: the lab's network is the switch routing each container's /32 to
	// its host, so a container that moved here has its addresses routed here.
	hook := fmt.Sprintf(`#!/bin/sh
# ferry-lab host %[1]s: ferry-receiver runs this after a container whose network moved here is
# committed. The lab's router is the switch: route the container's addresses to this host.
set -e
for a in $FERRY_ADDRESSES; do
	nsenter --net=%[2]s ip route replace "$a/32" via %[3]s
done
`, h.Name, SwitchNetnsFile(), h.Addr)
	hooks := filepath.Join(h.rootDir(), "etc/ferry/hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(hooks, "network-moved"), []byte(hook), 0o755)
}
