package lab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A VM runs a command on another kernel — Debian's stock one, which has what this machine's
// may lack (soft-dirty memory tracking, for pre-copy) — with this machine's root filesystem as
// its own: shared read-only over 9p under a tmpfs overlay, so every installed tool, the repo
// and its built binaries are there and nothing the VM does reaches this machine. qemu runs it
// with TCG (software emulation: KVM is not usable here), which is slow but needs nothing.

// VMDir holds the kernels `make deps` fetched (scripts/vm-kernel.sh).
const VMDir = "/var/cache/ferry/vm"

// VMOptions configure RunVM.
type VMOptions struct {
	KernelDir string // an unpacked linux-image package; default: the newest under VMDir
	MemMiB    int
	CPUs      int
	Timeout   time.Duration
	Dir       string   // working directory of the command
	Env       []string // its environment (KEY=VALUE)
	Argv      []string
	Output    io.Writer // the command's output (and the kernel's complaints)
}

// Kernel is an unpacked kernel: its image and its modules.
type Kernel struct {
	Version string
	Image   string // boot/vmlinuz-VERSION
	Modules string // lib/modules/VERSION (with modules.dep)
}

// FindKernel returns the kernel unpacked in dir, or the newest under VMDir when dir is "".
func FindKernel(dir string) (*Kernel, error) {
	dirs := []string{dir}
	if dir == "" {
		dirs, _ = filepath.Glob(filepath.Join(VMDir, "linux-*"))
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	}
	for _, d := range dirs {
		imgs, _ := filepath.Glob(filepath.Join(d, "boot", "vmlinuz-*"))
		if len(imgs) == 0 {
			continue
		}
		v := strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
		k := &Kernel{Version: v, Image: imgs[0], Modules: filepath.Join(d, "lib", "modules", v)}
		if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
			return nil, fmt.Errorf("kernel %s has no modules.dep (run depmod -b %s %s): %w", v, d, v, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("no kernel unpacked under %s: run make deps (scripts/vm-kernel.sh fetches Debian's)", VMDir)
}

// bootModules are what the VM needs before it can mount its root: virtio, 9p, overlayfs.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"}

// ModuleOrder resolves modules and their dependencies from modules.dep into a load order
// (dependencies first), as paths relative to the modules directory.
func ModuleOrder(modulesDep string, names []string) ([]string, error) {
	deps := map[string][]string{} // path → its dependencies, as modules.dep lists them
	byName := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(modulesDep))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		n := strings.TrimSuffix(filepath.Base(mod), filepath.Ext(mod))
		n = strings.TrimSuffix(n, ".ko")
		byName[strings.ReplaceAll(n, "-", "_")] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(mod string, depth int) error
	visit = func(mod string, depth int) error {
		if seen[mod] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("module dependencies loop at %s", mod)
		}
		ds, ok := deps[mod]
		if !ok {
			return fmt.Errorf("module %s is not in modules.dep", mod)
		}
		// modules.dep lists a module's dependencies so that the last is loaded first.
		for i := len(ds) - 1; i >= 0; i-- {
			if err := visit(ds[i], depth+1); err != nil {
				return err
			}
		}
		seen[mod] = true
		order = append(order, mod)
		return nil
	}
	for _, n := range names {
		mod, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("module %s is not in modules.dep", n)
		}
		if err := visit(mod, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

//go:embed vm/init.sh
var vmInit string

//go:embed vm/stage2.sh
var vmStage2 string

// exitMarker is how the VM reports the command's exit status on its console.
var exitMarker = regexp.MustCompile(`FERRY-VM-EXIT=(\d+)`)

// RunVM boots the kernel, runs the command and returns its exit status.
func RunVM(ctx context.Context, o VMOptions) (int, error) {
	if len(o.Argv) == 0 {
		return 0, errors.New("no command to run in the VM")
	}
	if o.MemMiB == 0 {
		o.MemMiB = 3072
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Output == nil {
		o.Output = os.Stdout
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return 0, fmt.Errorf("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; make deps does): %w", err)
	}
	k, err := FindKernel(o.KernelDir)
	if err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp("", "ferry-vm-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initrd.gz")
	if err := buildInitrd(initrd, k, o); err != nil {
		return 0, fmt.Errorf("build the VM's initramfs: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(o.MemMiB), "-smp", strconv.Itoa(o.CPUs),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", k.Image, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
	)
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	// The console: firmware and boot noise until stage 2 says the command starts (kept to
	// explain a failed boot), then the command's output, then its exit status.
	code := -1
	var boot bytes.Buffer
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		started := false
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.Map(func(r rune) rune {
				if r == 0 || r == '\r' {
					return -1
				}
				return r
			}, sc.Text())
			switch m := exitMarker.FindStringSubmatch(line); {
			case m != nil:
				code, _ = strconv.Atoi(m[1])
				started = false // what follows is the power-off
			case strings.HasSuffix(line, "FERRY-VM-START"):
				started = true
			case started:
				fmt.Fprintln(o.Output, line)
			default:
				boot.WriteString(line + "\n")
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	werr := cmd.Wait()
	pw.Close()
	<-scanned
	if ctx.Err() != nil {
		return 0, fmt.Errorf("the VM did not finish within %s", o.Timeout)
	}
	if code < 0 {
		return 0, fmt.Errorf("the VM stopped without reporting the command's exit status (qemu: %v); its console:\n%s", werr, lastLines(boot.String(), 40))
	}
	return code, nil
}

// buildInitrd writes the VM's initramfs: busybox, the boot modules, the two init stages and
// the command.
func buildInitrd(path string, k *Kernel, o VMOptions) error {
	dep, err := os.ReadFile(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return err
	}
	mods, err := ModuleOrder(string(dep), bootModules)
	if err != nil {
		return err
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox (static) is needed for the VM's first stage: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	w := newCpio(gz)
	for _, d := range []string{"bin", "dev", "proc", "sys", "lower", "rw", "newroot", "modules"} {
		w.dir(d)
	}
	w.file("bin/busybox", 0o755, busybox)
	var order []string
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(k.Modules, m))
		if err != nil {
			return err
		}
		name := filepath.Base(m)
		w.file("modules/"+name, 0o644, b)
		order = append(order, name)
	}
	w.file("modules/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	w.file("init", 0o755, []byte(vmInit))
	w.file("stage2", 0o755, []byte(vmStage2))
	w.file("kernel", 0o644, []byte(fmt.Sprintf("KVER=%s\nKMODULES=%s\nWORKDIR=%s\nWATCHDOG=%d\n", shq(k.Version), shq(k.Modules), shq(o.Dir), watchdogSeconds(o.Timeout))))
	w.file("command", 0o755, []byte(commandScript(o)))
	if err := w.close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}

// watchdogSeconds is when, in a VM given timeout, stage 2 reports what is blocked: 90 s
// before ferry-lab gives up on it (0: never, for a timeout too short to leave room).
func watchdogSeconds(timeout time.Duration) int {
	if timeout < 3*time.Minute {
		return 0
	}
	return int((timeout - 90*time.Second).Seconds())
}

// commandScript is the command as a shell script (run by stage 2).
func commandScript(o VMOptions) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	if o.Dir != "" {
		fmt.Fprintf(&b, "cd %s || exit 125\n", shq(o.Dir))
	}
	b.WriteString("exec env -i")
	for _, e := range o.Env {
		b.WriteString(" " + shq(e))
	}
	for _, a := range o.Argv {
		b.WriteString(" " + shq(a))
	}
	b.WriteString("\n")
	return b.String()
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// cpio writes a newc archive (what the kernel unpacks as initramfs).
type cpio struct {
	w   io.Writer
	ino int
	err error
}

func newCpio(w io.Writer) *cpio { return &cpio{w: w, ino: 1} }

func (c *cpio) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	var h bytes.Buffer
	fmt.Fprintf(&h, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	h.WriteString(name)
	h.WriteByte(0)
	for h.Len()%4 != 0 {
		h.WriteByte(0)
	}
	h.Write(data)
	for h.Len()%4 != 0 {
		h.WriteByte(0)
	}
	_, c.err = c.w.Write(h.Bytes())
}

func (c *cpio) dir(name string)                         { c.entry(name, 0o040755, nil) }
func (c *cpio) file(name string, perm uint32, b []byte) { c.entry(name, 0o100000|perm, b) }
func (c *cpio) close() error                            { c.entry("TRAILER!!!", 0, nil); return c.err }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
