package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ferry-project/ferry/migrate"
)

// BenchFSResult is the JSON `ferry-lab bench-fs` writes.
type BenchFSResult struct {
	Date    time.Time         `json:"date"`
	Machine map[string]string `json:"machine"`
	SizeMiB int               `json:"size_mib"`
	Runs    []BenchFSRun      `json:"runs"`
	// Ratio per driver: median downtime with SizeMiB of data and 1 MiB changed, over the median
	// downtime with an empty volume. The goal is ≤ Goal.
	Ratio map[string]float64 `json:"ratio"`
	Goal  float64            `json:"goal"`
	// Rsync is the baseline: plain `rsync -a` of the same volume tree over OpenSSH, host to
	// host, outside ferry — its initial copy and, after the same 1 MiB change, its incremental
	// pass (what a stop → rsync → start move would be frozen for, rsync's own recheck included).
	Rsync []BenchRsyncRun `json:"rsync_baseline"`
}

// BenchRsyncRun is one plain rsync of a volume tree.
type BenchRsyncRun struct {
	Case      string  `json:"case"` // "initial" or "changed"
	VolumeMiB int     `json:"volume_mib"`
	Ms        float64 `json:"ms"`
}

// BenchFSRun is one migration.
type BenchFSRun struct {
	Driver     string  `json:"driver"`
	Case       string  `json:"case"` // "initial" (the whole volume), "changed" (1 MiB since the last move), "empty"
	VolumeMiB  int     `json:"volume_mib"`
	Bytes      int64   `json:"bytes"` // volume bytes carried (pre-sync + final)
	PresyncMs  float64 `json:"presync_ms"`
	FinalMs    float64 `json:"final_ms"`
	DowntimeMs float64 `json:"downtime_ms"`
	TotalMs    float64 `json:"total_ms"`
}

// BenchFS measures the filesystem drivers on the lab (which must be up with --zfs).
func BenchFS(ctx context.Context, sizeMiB, repeat int, progress io.Writer) (*BenchFSResult, error) {
	if !ZFSEnabled() {
		return nil, errors.New("bench-fs needs the lab up with ZFS: ferry-lab up --zfs")
	}
	res := &BenchFSResult{Date: time.Now().UTC(), SizeMiB: sizeMiB, Ratio: map[string]float64{}, Goal: 1.2, Machine: machine()}
	for _, drv := range []string{"zfs", "rsync"} {
		med := map[string]float64{}
		for _, size := range []int{0, sizeMiB} {
			runs, err := benchVolume(ctx, drv, size, repeat, progress)
			if err != nil {
				return nil, fmt.Errorf("%s, %d MiB: %w", drv, size, err)
			}
			res.Runs = append(res.Runs, runs...)
			if drv == "rsync" && size > 0 {
				base, err := benchPlainRsync(ctx, size, progress)
				if err != nil {
					return nil, fmt.Errorf("plain rsync baseline: %w", err)
				}
				res.Rsync = append(res.Rsync, base...)
			}
			var dts []float64
			for _, r := range runs {
				if r.Case != "initial" {
					dts = append(dts, r.DowntimeMs)
				}
			}
			slices.Sort(dts)
			med[fmt.Sprint(size)] = dts[len(dts)/2]
		}
		res.Ratio[drv] = med[fmt.Sprint(sizeMiB)] / med["0"]
	}
	return res, nil
}

func benchVolume(ctx context.Context, drv string, mib, repeat int, progress io.Writer) ([]BenchFSRun, error) {
	name := fmt.Sprintf("bfs-%s-%d", drv, mib)
	path := "/srv/" + name
	vol := path
	if drv == "zfs" {
		vol += ":zfs"
	}
	a, b := Hosts[0], Hosts[1]
	defer func() { // remove the container, then every copy of the volume
		for _, h := range Hosts {
			_ = runIn(ctx, h, HelperPath(), HelperCmd, "rm", name)
			_ = runIn(ctx, h, "sh", "-c", fmt.Sprintf("for d in $(zfs list -H -o name -r %s | grep -- '%s'); do zfs destroy -r $d; done; rm -rf %s", Pool, name, path))
		}
	}()
	if err := runIn(ctx, a, HelperPath(), HelperCmd, "run", a.Name, name, "--volume", vol, "--", "sleep", "1000000"); err != nil {
		return nil, err
	}
	change := func(h Host) error {
		if mib == 0 {
			return nil
		}
		// 1 MiB rewritten in place, well before the next pre-sync (the rsync driver rechecks
		// files modified since the pre-sync began).
		err := runIn(ctx, h, "dd", "if=/dev/urandom", "of="+path+"/data", "bs=1M", "count=1", fmt.Sprintf("seek=%d", mib/2), "conv=notrunc", "status=none")
		time.Sleep(3 * time.Second)
		return err
	}
	if mib > 0 {
		if err := runIn(ctx, a, "dd", "if=/dev/urandom", "of="+path+"/data", "bs=1M", fmt.Sprintf("count=%d", mib), "status=none"); err != nil {
			return nil, err
		}
	}
	var runs []BenchFSRun
	from, to := a, b
	for i := 0; i <= repeat; i++ {
		kind := "changed"
		switch {
		case mib == 0:
			kind = "empty"
		case i == 0:
			kind = "initial"
		}
		rep, err := benchMigrate(ctx, from, name, to)
		if err != nil {
			return nil, err
		}
		r := BenchFSRun{Driver: drv, Case: kind, VolumeMiB: mib, DowntimeMs: rep.DowntimeMs, TotalMs: rep.TotalMs}
		for _, s := range rep.Streams {
			if strings.HasPrefix(s.Name, "vol-1") {
				r.Bytes += s.Bytes
			}
		}
		for _, p := range rep.Phases {
			switch p.Name {
			case "fs-presync":
				r.PresyncMs = p.EndMs - p.StartMs
			case "fs-final":
				r.FinalMs = p.EndMs - p.StartMs
			}
		}
		if d := planDriver(rep); d != drv {
			return nil, fmt.Errorf("the volume moved with %s, not %s: %s", d, drv, planReason(rep))
		}
		fmt.Fprintf(progress, "%-5s %-7s %5d MiB %s→%s: downtime %6.0f ms, volume bytes %d, pre-sync %.0f ms, final %.0f ms\n",
			drv, kind, mib, from.Name, to.Name, r.DowntimeMs, r.Bytes, r.PresyncMs, r.FinalMs)
		runs = append(runs, r)
		from, to = to, from
		if err := change(from); err != nil {
			return nil, err
		}
	}
	return runs, nil
}

// benchPlainRsync times plain rsync of a volume tree of mib MiB from a to b over OpenSSH:
// the whole tree, then again after 1 MiB of it changed.
func benchPlainRsync(ctx context.Context, mib int, progress io.Writer) ([]BenchRsyncRun, error) {
	a, b := Hosts[0], Hosts[1]
	src, dst := "/srv/bfs-plain-src", "/srv/bfs-plain-dst"
	defer func() {
		_ = runIn(ctx, a, "rm", "-rf", src)
		_ = runIn(ctx, b, "rm", "-rf", dst)
	}()
	if err := runIn(ctx, a, "sh", "-c", fmt.Sprintf("mkdir -p %s && dd if=/dev/urandom of=%s/data bs=1M count=%d status=none", src, src, mib)); err != nil {
		return nil, err
	}
	sync := func() (float64, error) {
		t := time.Now()
		err := runIn(ctx, a, "rsync", "-a", "--delete", "-e", "ssh -o BatchMode=yes -o Compression=no -c aes128-gcm@openssh.com", src+"/", b.Addr.String()+":"+dst+"/")
		return msSince(t), err
	}
	var out []BenchRsyncRun
	for _, c := range []string{"initial", "changed"} {
		if c == "changed" {
			if err := runIn(ctx, a, "dd", "if=/dev/urandom", "of="+src+"/data", "bs=1M", "count=1", fmt.Sprintf("seek=%d", mib/2), "conv=notrunc", "status=none"); err != nil {
				return nil, err
			}
		}
		ms, err := sync()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "plain rsync %-7s %5d MiB a→b: %6.0f ms\n", c, mib, ms)
		out = append(out, BenchRsyncRun{Case: c, VolumeMiB: mib, Ms: ms})
	}
	return out, nil
}

func benchMigrate(ctx context.Context, from Host, name string, to Host, flags ...string) (*migrate.Report, error) {
	out, err := Command(from, append([]string{"ferry", "migrate", name, to.Name, "--output", "json"}, flags...)...).Output()
	var rep migrate.Report
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return nil, fmt.Errorf("migrate %s %s→%s: %v (%v)", name, from.Name, to.Name, err, jerr)
	}
	if rep.Outcome != migrate.OutcomeCommitted {
		return nil, fmt.Errorf("migrate %s %s→%s: %s: %s", name, from.Name, to.Name, rep.Outcome, rep.Error)
	}
	return &rep, ctx.Err()
}

func planDriver(r *migrate.Report) string {
	for _, m := range r.FSPlan {
		if m.Name == "vol-1" {
			return m.Driver
		}
	}
	return ""
}

func planReason(r *migrate.Report) string {
	for _, m := range r.FSPlan {
		if m.Name == "vol-1" {
			return m.Reason
		}
	}
	return ""
}

func machine() map[string]string {
	m := map[string]string{"goos": runtime.GOOS, "cpus": fmt.Sprint(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) > 1 {
			m["mem_kib"] = f[1]
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	m["zfs"] = "zfs-fuse 0.7.0 (lab)"
	return m
}

// Markdown renders a result as a table.
func (r *BenchFSResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| driver | case | volume | volume bytes sent | pre-sync | final sync | downtime |\n|---|---|---|---|---|---|---|\n")
	for _, x := range r.Runs {
		fmt.Fprintf(&b, "| %s | %s | %d MiB | %d | %.0f ms | %.0f ms | %.0f ms |\n", x.Driver, x.Case, x.VolumeMiB, x.Bytes, x.PresyncMs, x.FinalMs, x.DowntimeMs)
	}
	fmt.Fprintf(&b, "\nDowntime with %d MiB and 1 MiB changed ÷ downtime with an empty volume (medians; goal ≤ %.1f):", r.SizeMiB, r.Goal)
	for _, d := range []string{"zfs", "rsync"} {
		fmt.Fprintf(&b, " %s %.2f", d, r.Ratio[d])
	}
	b.WriteString("\n")
	if len(r.Rsync) > 0 {
		b.WriteString("\nBaseline, plain `rsync -a` of the same tree over OpenSSH (outside ferry):")
		for _, x := range r.Rsync {
			fmt.Fprintf(&b, " %s %d MiB %.0f ms;", x.Case, x.VolumeMiB, x.Ms)
		}
		b.WriteString("\n")
	}
	return b.String()
}
