package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/ferry-project/ferry/migrate"
)

// BenchMemResult is the JSON `ferry-lab bench-mem` writes: ferry's memory strategies for a few
// workload sizes, next to the SSH link's own time for the same bytes and Podman's
// checkpoint --export → copy → restore --import pipeline, all measured in the same run.
type BenchMemResult struct {
	Date       time.Time         `json:"date"`
	Machine    map[string]string `json:"machine"`
	SizesMiB   []int             `json:"sizes_mib"`
	DirtyMiBps float64           `json:"dirty_mib_per_s"`
	Runs       []BenchMemRun     `json:"runs"`    // one per ferry migration
	Link       []BenchLinkRun    `json:"link"`    // raw SSH: the same bytes through `ssh … cat`, into /dev/null and into a file on b
	Podman     []BenchPodmanRun  `json:"podman"`  // the baseline pipeline
	Skipped    map[string]string `json:"skipped"` // strategy or baseline → why it did not run here
	Summary    []BenchMemSummary `json:"summary"` // medians per size and method
	Goals      []BenchGoal       `json:"goals"`
}

// BenchMemRun is one ferry migration.
type BenchMemRun struct {
	Strategy    string          `json:"strategy"`
	Driver      string          `json:"driver,omitempty"` // the filesystem case: rootfs (writable layer only), rsync or zfs (plus a volume)
	MemMiB      int             `json:"mem_mib"`
	From        string          `json:"from"`
	To          string          `json:"to"`
	DowntimeMs  float64         `json:"downtime_ms"`
	TotalMs     float64         `json:"total_ms"`
	ResidencyMs float64         `json:"residency_ms,omitempty"`
	WireBytes   int64           `json:"wire_bytes"`
	PagesBytes  int64           `json:"pages_bytes"` // bytes of the memory streams (final dump, pre-copy rounds, lazy fill)
	PreRounds   int             `json:"pre_copy_rounds,omitempty"`
	LocalBytes  int64           `json:"source_disk_checkpoint_bytes"`
	report      *migrate.Report // while the bench runs
	// Phases are the migration's own (for the timeline plot).
	Phases []migrate.Phase `json:"phases,omitempty"`
}

// BenchLinkRun is the SSH link's time for a number of bytes: OpenSSH, aes128-gcm, host a → b.
type BenchLinkRun struct {
	MemMiB int     `json:"mem_mib"`
	Bytes  int64   `json:"bytes"`
	Ms     float64 `json:"ms"`
	// Into is where the bytes went on b: "/dev/null" (the link alone) or "file" (a file in b's
	// /var/lib/ferry, where the receiver keeps images: the bytes also land in b's memory, as
	// every checkpoint's pages must before a restore).
	Into string `json:"into"`
}

// linkFile is the raw-SSH-into-a-file baseline's file on b: the receiver's state directory.
const linkFile = "/var/lib/ferry/bench-link.tmp"

// BenchPodmanRun is Podman's pipeline for one container: the container is stopped from the start
// of the checkpoint to the end of the restore, so that sum is its downtime.
type BenchPodmanRun struct {
	MemMiB       int     `json:"mem_mib"`
	CheckpointMs float64 `json:"checkpoint_ms"`
	CopyMs       float64 `json:"copy_ms"`
	RestoreMs    float64 `json:"restore_ms"`
	DowntimeMs   float64 `json:"downtime_ms"`
	ArchiveBytes int64   `json:"archive_bytes"`
}

// BenchMemSummary is the median of a method at one size.
type BenchMemSummary struct {
	Method      string  `json:"method"` // stop-copy, post-copy, pre-copy, podman, raw-ssh
	Driver      string  `json:"driver,omitempty"`
	MemMiB      int     `json:"mem_mib"`
	DowntimeMs  float64 `json:"downtime_ms"`
	ResidencyMs float64 `json:"residency_ms,omitempty"`
	Bytes       int64   `json:"bytes,omitempty"`
}

// BenchGoal is one of the goals of the memory work, with what this run measured.
type BenchGoal struct {
	Goal     string  `json:"goal"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	Met      bool    `json:"met"`
}

// BenchMemOptions says what to measure.
type BenchMemOptions struct {
	SizesMiB   []int
	Repeat     int     // ferry moves per size and strategy (alternating a→b, b→a)
	DirtyMiBps float64 // how fast the workload rewrites its memory
	Podman     bool
	// Drivers are the filesystem cases, each crossed with every size and strategy: "rootfs"
	// (the writable layer only, by rsync), "rsync" or "zfs" (plus a 16 MiB volume on a plain
	// directory or on a dataset of the lab's pool; zfs needs ferry-lab up --zfs).
	Drivers []string
}

// benchVolumeMiB is the volume a bench workload keeps with the rsync and zfs drivers.
const benchVolumeMiB = 16

// BenchMem measures ferry's memory strategies and the baselines on the lab (which must be up).
func BenchMem(ctx context.Context, o BenchMemOptions, progress io.Writer) (*BenchMemResult, error) {
	res := &BenchMemResult{Date: time.Now().UTC(), Machine: machine(), SizesMiB: o.SizesMiB, DirtyMiBps: o.DirtyMiBps,
		Skipped: map[string]string{}}
	delete(res.Machine, "zfs")
	a, b := Hosts[0], Hosts[1]
	strategies := []string{"stop-copy", "post-copy"}
	if out, err := Command(a, "criu", "check", "--feature", "mem_dirty_track").CombinedOutput(); err != nil {
		res.Skipped["pre-copy"] = "this kernel has no soft-dirty memory tracking (criu check --feature mem_dirty_track: " +
			strings.TrimSpace(lastLine(string(out))) + "); pre-copy is tested in a VM by make test-precopy"
	} else {
		strategies = append(strategies, "pre-copy")
	}
	if o.Podman {
		if _, err := exec.LookPath("podman"); err != nil {
			res.Skipped["podman"] = "podman is not installed (make bench installs it)"
			o.Podman = false
		}
	} else {
		res.Skipped["podman"] = "not asked for"
	}
	if len(o.Drivers) == 0 {
		o.Drivers = []string{"rootfs"}
	}
	for _, drv := range o.Drivers {
		if drv == "zfs" && !ZFSEnabled() {
			return nil, errors.New("bench-mem --drivers zfs needs the lab up with ZFS: ferry-lab up --zfs")
		}
	}
	for _, mib := range o.SizesMiB {
		var all []BenchMemRun
		for _, drv := range o.Drivers {
			runs, err := benchMemDriver(ctx, o, strategies, drv, mib, progress)
			if err != nil {
				return nil, fmt.Errorf("%d MiB, %s: %w", mib, drv, err)
			}
			all = append(all, runs...)
		}
		res.Runs = append(res.Runs, all...)
		// The link's time for the bytes the stop-and-copy moves of the first case sent (median).
		var wire []float64
		for _, r := range all {
			if r.Strategy == "stop-copy" && r.Driver == o.Drivers[0] {
				wire = append(wire, float64(r.WireBytes))
			}
		}
		bytes := int64(median(wire))
		for i := 0; i < 3; i++ {
			for _, into := range []string{"/dev/null", "file"} {
				ms, err := rawSSH(ctx, a, b, bytes, into)
				if err != nil {
					return nil, err
				}
				res.Link = append(res.Link, BenchLinkRun{MemMiB: mib, Bytes: bytes, Ms: ms, Into: into})
				fmt.Fprintf(progress, "raw-ssh   %5d MiB a→b into %s: %d bytes in %.0f ms\n", mib, into, bytes, ms)
			}
		}
		if o.Podman {
			p, err := benchPodman(ctx, mib, o.DirtyMiBps)
			if err != nil {
				return nil, fmt.Errorf("podman, %d MiB: %w", mib, err)
			}
			res.Podman = append(res.Podman, *p)
			fmt.Fprintf(progress, "podman    %5d MiB a→b: downtime %6.0f ms (checkpoint %.0f, copy %.0f, restore %.0f), archive %d bytes\n",
				mib, p.DowntimeMs, p.CheckpointMs, p.CopyMs, p.RestoreMs, p.ArchiveBytes)
		}
	}
	res.summarize()
	return res, nil
}

// benchMemDriver moves one workload of mib MiB with each strategy, repeat times, a ↔ b.
func benchMemDriver(ctx context.Context, o BenchMemOptions, strategies []string, drv string, mib int, progress io.Writer) ([]BenchMemRun, error) {
	a, b := Hosts[0], Hosts[1]
	name := fmt.Sprintf("bm-%d-%s", mib, drv)
	args := []string{"run", a.Name, name, "--mem", fmt.Sprint(mib), "--dirty", fmt.Sprint(o.DirtyMiBps)}
	path := "/srv/" + name
	switch drv {
	case "rootfs":
	case "rsync":
		args = append(args, "--volume", path, "--volume-mib", fmt.Sprint(benchVolumeMiB))
	case "zfs":
		args = append(args, "--volume", path+":zfs", "--volume-mib", fmt.Sprint(benchVolumeMiB))
	default:
		return nil, fmt.Errorf("unknown filesystem case %q (rootfs, rsync, zfs)", drv)
	}
	defer func() { // the container, then every copy of its volume
		for _, h := range Hosts {
			_ = runIn(ctx, h, HelperPath(), HelperCmd, "rm", name)
			if drv != "rootfs" {
				_ = runIn(ctx, h, "sh", "-c", fmt.Sprintf("if command -v zfs >/dev/null; then for d in $(zfs list -H -o name -r %s 2>/dev/null | grep -- '%s'); do zfs destroy -r $d; done; fi; rm -rf %s", Pool, name, path))
			}
		}
	}()
	if err := runIn(ctx, a, append([]string{HelperPath(), HelperCmd}, args...)...); err != nil {
		return nil, err
	}
	at := a
	{
		runs, err := func() ([]BenchMemRun, error) {
			var runs []BenchMemRun
			for _, s := range strategies {
				for i := 0; i < o.Repeat; i++ {
					to := b
					if at == b {
						to = a
					}
					r, err := benchMemMove(ctx, name, mib, s, at, to)
					if err != nil {
						return runs, err
					}
					r.Driver = drv
					if d := planDriver(r.report); drv != "rootfs" && d != drv {
						return runs, fmt.Errorf("the volume moved with %q, not %s: %s", d, drv, planReason(r.report))
					}
					r.report = nil
					at = to
					runs = append(runs, *r)
					fmt.Fprintf(progress, "%-9s %-6s %5d MiB %s→%s: downtime %6.0f ms, total %6.0f ms, residency %6.0f ms, wire %d bytes\n",
						s, drv, mib, r.From, r.To, r.DowntimeMs, r.TotalMs, r.ResidencyMs, r.WireBytes)
				}
			}
			return runs, nil
		}()
		return runs, err
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func benchMemMove(ctx context.Context, name string, mib int, strategy string, from, to Host) (*BenchMemRun, error) {
	if err := runIn(ctx, from, HelperPath(), HelperCmd, "check", from.Name, name); err != nil {
		return nil, fmt.Errorf("before the move: %w", err)
	}
	rep, err := benchMigrate(ctx, from, name, to, "--strategy", strategy)
	if err != nil {
		return nil, err
	}
	// Every measured move is also checked: a fast move that lost memory is no result.
	if err := runIn(ctx, to, HelperPath(), HelperCmd, "check", to.Name, name); err != nil {
		return nil, fmt.Errorf("after the %s move: %w", strategy, err)
	}
	r := &BenchMemRun{Strategy: strategy, MemMiB: mib, From: from.Name, To: to.Name, DowntimeMs: rep.DowntimeMs,
		TotalMs: rep.TotalMs, ResidencyMs: rep.ResidencyMs, WireBytes: rep.WireBytes, LocalBytes: rep.CRIU.LocalBytes, Phases: rep.Phases, report: rep}
	for _, s := range rep.Streams {
		if s.Name == "pages" || strings.HasPrefix(s.Name, "pre-") {
			r.PagesBytes += s.Bytes
		}
	}
	if rep.PreCopy != nil {
		r.PreRounds = len(rep.PreCopy.Rounds)
	}
	return r, nil
}

// rawSSH times `bytes` bytes from host a to host b through OpenSSH (aes128-gcm, no compression)
// into cat: with into "/dev/null" the link's limit for that many bytes; with "file" into
// linkFile, so the bytes also land in b's memory (page cache), as a checkpoint's pages do.
func rawSSH(ctx context.Context, a, b Host, bytes int64, into string) (float64, error) {
	dst := "/dev/null"
	if into == "file" {
		dst = linkFile
		defer func() { _ = runIn(context.WithoutCancel(ctx), b, "rm", "-f", linkFile) }()
	}
	script := fmt.Sprintf("head -c %d /dev/zero | ssh -o BatchMode=yes -o Compression=no -c aes128-gcm@openssh.com %s 'cat >%s'", bytes, b.Addr, dst)
	t := time.Now()
	if err := runIn(ctx, a, "sh", "-c", script); err != nil {
		return 0, fmt.Errorf("raw ssh into %s: %w", into, err)
	}
	return float64(time.Since(t).Microseconds()) / 1000, nil
}

// podman runs Podman on lab host h with its own storage, cgroupfs and no network.
func podman(h Host, args ...string) *exec.Cmd {
	base := []string{"podman", "--root", podmanDir(h) + "/root", "--runroot", "/run/ferry-lab-podman",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"}
	return Command(h, append(base, args...)...)
}

func podmanDir(h Host) string { return StateDir + "/podman/" + h.Name }

func runPodman(h Host, args ...string) (string, error) {
	out, err := podman(h, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("on %s: podman %s: %w: %s", h.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// benchPodman times Podman's own way of moving a running container with the same workload:
// checkpoint --export on a, the archive copied over SSH, restore --import on b.
func benchPodman(ctx context.Context, mib int, dirty float64) (*BenchPodmanRun, error) {
	a, b := Hosts[0], Hosts[1]
	name := fmt.Sprintf("pm-%d", mib)
	// Each host its own archive path: the lab hosts share /var/lib/ferry-lab.
	archive := func(h Host) string { return podmanDir(h) + "/" + name + ".tar" }
	for _, h := range []Host{a, b} {
		if _, err := runPodman(h, "image", "exists", ImageRef); err != nil {
			if _, err := runPodman(h, "load", "-q", "-i", StateDir+"/image/workload.tar"); err != nil {
				return nil, err
			}
		}
	}
	defer func() {
		for _, h := range []Host{a, b} {
			_, _ = runPodman(h, "rm", "-f", "-t", "0", name)
			_ = runIn(ctx, h, "rm", "-f", archive(h))
		}
	}()
	if _, err := runPodman(a, "run", "-d", "--name", name, "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", ImageRef,
		"--mem", fmt.Sprint(mib), "--dirty", fmt.Sprint(dirty)); err != nil {
		return nil, err
	}
	if err := waitRSS(ctx, a, name, mib); err != nil {
		return nil, err
	}
	r := &BenchPodmanRun{MemMiB: mib}
	t := time.Now()
	if _, err := runPodman(a, "container", "checkpoint", "--export", archive(a), name); err != nil {
		return nil, err
	}
	r.CheckpointMs = msSince(t)
	if out, err := Command(a, "stat", "-c", "%s", archive(a)).Output(); err == nil {
		fmt.Sscan(string(out), &r.ArchiveBytes)
	}
	t = time.Now()
	cp := fmt.Sprintf("ssh -o BatchMode=yes -o Compression=no -c aes128-gcm@openssh.com %s 'cat > %s' < %s", b.Addr, archive(b), archive(a))
	if err := runIn(ctx, a, "sh", "-c", cp); err != nil {
		return nil, err
	}
	r.CopyMs = msSince(t)
	t = time.Now()
	if _, err := runPodman(b, "container", "restore", "--import", archive(b)); err != nil {
		return nil, err
	}
	r.RestoreMs = msSince(t)
	r.DowntimeMs = r.CheckpointMs + r.CopyMs + r.RestoreMs
	st, err := runPodman(b, "inspect", "-f", "{{.State.Status}}", name)
	if err != nil {
		return nil, err
	}
	if st != "running" {
		return nil, fmt.Errorf("podman restored %s on b, but it is %q", name, st)
	}
	return r, nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// waitRSS waits until the container's process holds its memory.
func waitRSS(ctx context.Context, h Host, name string, mib int) error {
	pid, err := runPodman(h, "inspect", "-f", "{{.State.Pid}}", name)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := Command(h, "grep", "VmRSS", "/proc/"+pid+"/status").Output()
		var kib int
		if f := strings.Fields(string(out)); err == nil && len(f) > 1 {
			fmt.Sscan(f[1], &kib)
		}
		if kib >= mib*1024*95/100 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("podman container %s did not reach %d MiB of RSS", name, mib)
}

// PodmanCleanup removes the bench's Podman storage on every host.
func PodmanCleanup(ctx context.Context) {
	for _, h := range Hosts {
		if fileExists(podmanDir(h)) {
			_, _ = runPodman(h, "system", "reset", "--force")
			_ = runIn(ctx, h, "rm", "-rf", podmanDir(h))
		}
	}
	_ = os.Remove(StateDir + "/podman")
}

// summarize computes the medians and checks the goals.
func (r *BenchMemResult) summarize() {
	r.Summary, r.Goals = nil, nil
	type key struct {
		method, driver string
		mib            int
	}
	dt, res, by := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	var keys []key
	add := func(k key, d, rs, b float64) {
		if _, ok := dt[k]; !ok {
			keys = append(keys, k)
		}
		dt[k] = append(dt[k], d)
		if rs > 0 {
			res[k] = append(res[k], rs)
		}
		by[k] = append(by[k], b)
	}
	for _, x := range r.Runs {
		add(key{x.Strategy, x.Driver, x.MemMiB}, x.DowntimeMs, x.ResidencyMs, float64(x.WireBytes))
	}
	for _, x := range r.Link {
		m := "raw-ssh"
		if x.Into == "file" {
			m = "raw-ssh-file"
		}
		add(key{m, "", x.MemMiB}, x.Ms, 0, float64(x.Bytes))
	}
	for _, x := range r.Podman {
		add(key{"podman", "", x.MemMiB}, x.DowntimeMs, 0, float64(x.ArchiveBytes))
	}
	med := map[key]float64{}
	for _, k := range keys {
		med[k] = median(dt[k])
		r.Summary = append(r.Summary, BenchMemSummary{Method: k.method, Driver: k.driver, MemMiB: k.mib, DowntimeMs: med[k],
			ResidencyMs: median(res[k]), Bytes: int64(median(by[k]))})
	}
	if len(r.SizesMiB) == 0 {
		return
	}
	big := slices.Max(r.SizesMiB)
	drv := "" // the goals are about the first filesystem case (rootfs: the writable layer only)
	if len(r.Runs) > 0 {
		drv = r.Runs[0].Driver
	}
	sc, raw := med[key{"stop-copy", drv, big}], med[key{"raw-ssh", "", big}]
	if sc > 0 && raw > 0 {
		limit := 1.5*raw + 500
		r.Goals = append(r.Goals, BenchGoal{Goal: fmt.Sprintf("stop-copy downtime at %d MiB ≤ 1.5 × raw SSH time + 500 ms", big),
			Measured: fmt.Sprintf("%.0f ms vs 1.5 × %.0f + 500 = %.0f ms", sc, raw, limit), Value: sc, Limit: limit, Met: sc <= limit})
	}
	if pm := med[key{"podman", "", big}]; sc > 0 && pm > 0 {
		x := pm / sc
		r.Goals = append(r.Goals, BenchGoal{Goal: fmt.Sprintf("stop-copy downtime at %d MiB ≥ 5× below Podman's", big),
			Measured: fmt.Sprintf("Podman %.0f ms / ferry %.0f ms = %.1f×", pm, sc, x), Value: x, Limit: 5, Met: x >= 5})
	}
	var pc []float64
	for _, mib := range r.SizesMiB {
		if d, ok := med[key{"post-copy", drv, mib}]; ok {
			pc = append(pc, d)
		}
	}
	if len(pc) > 0 {
		hi, lo := slices.Max(pc), slices.Min(pc)
		r.Goals = append(r.Goals, BenchGoal{Goal: "post-copy downtime ≤ 500 ms at every size",
			Measured: fmt.Sprintf("largest median %.0f ms", hi), Value: hi, Limit: 500, Met: hi <= 500})
		r.Goals = append(r.Goals, BenchGoal{Goal: "post-copy downtime flat: max/min of the medians ≤ 1.5",
			Measured: fmt.Sprintf("%.0f / %.0f ms = %.2f", hi, lo, hi/lo), Value: hi / lo, Limit: 1.5, Met: hi/lo <= 1.5})
	}
}

// methodLabel names a summary's method for tables and plots.
func methodLabel(method string) string {
	switch method {
	case "raw-ssh":
		return "raw SSH into /dev/null (link limit, same bytes as stop-copy)"
	case "raw-ssh-file":
		return "raw SSH into a file on the target (same bytes)"
	case "podman":
		return "Podman checkpoint --export → ssh → restore --import"
	}
	return method
}

// Markdown renders the medians and the goals.
func (r *BenchMemResult) Markdown() string {
	var b strings.Builder
	b.WriteString("| method | filesystem | RSS | downtime (median) | time to full residency | bytes |\n|---|---|---|---|---|---|\n")
	for _, s := range r.Summary {
		rs := "—"
		if s.ResidencyMs > 0 {
			rs = fmt.Sprintf("%.0f ms", s.ResidencyMs)
		}
		name := methodLabel(s.Method)
		fs := s.Driver
		if fs == "" {
			fs = "—"
		} else if fs != "rootfs" {
			fs = fmt.Sprintf("rootfs + %d MiB volume (%s)", benchVolumeMiB, fs)
		}
		fmt.Fprintf(&b, "| %s | %s | %d MiB | %.0f ms | %s | %d |\n", name, fs, s.MemMiB, s.DowntimeMs, rs, s.Bytes)
	}
	b.WriteString("\n| goal | measured | met |\n|---|---|---|\n")
	for _, g := range r.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, g.Measured, met)
	}
	var skipped []string
	for k := range r.Skipped {
		skipped = append(skipped, k)
	}
	slices.Sort(skipped)
	for _, k := range skipped {
		fmt.Fprintf(&b, "\nNot measured: %s — %s\n", k, r.Skipped[k])
	}
	return b.String()
}
