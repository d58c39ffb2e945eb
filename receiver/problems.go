package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/hostinfo"
	"github.com/ferry-project/ferry/transport/wire"
)

// spaceMargin is kept free beyond the estimate (logs, CRIU work files, rounding).
const spaceMargin = 64 << 20

// TargetProblems checks the target's facts against the migration's needs (pure).
func TargetProblems(t wire.HostFacts, req wire.PreflightRequest) []wire.Problem {
	p := hostinfo.Problems(t)
	if len(p) == 0 && req.Source.CRIUVersion > t.CRIUVersion {
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU on %s (%s) is older than on %s (%s): images may not restore", t.Host, checkpoint.FormatVersion(t.CRIUVersion), req.Source.Host, checkpoint.FormatVersion(req.Source.CRIUVersion)), Hint: "upgrade CRIU on the target"})
	}
	if need := req.ImageBytes + req.FSBytes + spaceMargin; t.FreeBytes < need {
		p = append(p, wire.Problem{Code: "precondition",
			Message: fmt.Sprintf("%s has %s free for ferry, the migration needs about %s (memory %s + writable layer %s)", t.Host, human(t.FreeBytes), human(need), human(req.ImageBytes), human(req.FSBytes)),
			Hint:    "free space on the target's /var/lib"})
	}
	return p
}

func human(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// cpuProblem runs `criu cpuinfo check` on the source's CPU description: a process dumped on a
// CPU with features this one lacks could crash after the restore, so the migration is refused
// before anything changes.
func cpuProblem(ctx context.Context, t, src wire.HostFacts) *wire.Problem {
	switch {
	case t.CRIUVersion == 0 || t.CRIUCheck != "":
		return nil // CRIU itself is the problem, reported already
	case src.CPUInfoError != "":
		return nil // the source refuses for it
	case len(src.CPUInfo) == 0:
		return &wire.Problem{Code: "precondition", Message: fmt.Sprintf("%s sent no description of its CPU, so compatibility with %s cannot be checked", src.Host, t.Host),
			Hint: "use the same ferry version on both hosts"}
	}
	if err := checkpoint.CheckCPUInfo(ctx, src.CPUInfo); err != nil {
		return &wire.Problem{Code: "unsupported",
			Message: fmt.Sprintf("%s's CPU lacks features of %s's CPU that the container's processes may use (%v)", t.Host, src.Host, err),
			Hint:    "move it to a host with the same CPU model or a superset of its features (or restart the container there instead of migrating)"}
	}
	return nil
}

// apparmorFS is where the kernel lists AppArmor's state (a variable for tests).
var apparmorFS = "/sys/kernel/security/apparmor"

// apparmorProblem refuses a container whose spec confines it with an AppArmor profile this
// host cannot apply: CRIU's restorer sets the task's LSM label from the image, so the profile
// must be loaded here before the restore, or the restore fails (or, worse, the task would run
// unconfined somewhere that ignored it).
func apparmorProblem(spec []byte, host string) *wire.Problem {
	var sp struct {
		Process *struct {
			ApparmorProfile string `json:"apparmorProfile"`
		} `json:"process"`
	}
	if json.Unmarshal(spec, &sp) != nil || sp.Process == nil || sp.Process.ApparmorProfile == "" {
		return nil
	}
	name := sp.Process.ApparmorProfile
	b, err := os.ReadFile(filepath.Join(apparmorFS, "profiles"))
	if err != nil {
		return &wire.Problem{Code: "unsupported",
			Message: fmt.Sprintf("the container is confined by the AppArmor profile %q, and %s has no AppArmor (%v)", name, host, err),
			Hint:    "move it to a host with AppArmor enabled and that profile loaded"}
	}
	for _, l := range strings.Split(string(b), "\n") {
		// Lines read "NAME (enforce)" or "NAME (complain)".
		if n, _, ok := strings.Cut(l, " ("); ok && n == name {
			return nil
		}
	}
	return &wire.Problem{Code: "precondition",
		Message: fmt.Sprintf("the container is confined by the AppArmor profile %q, which is not loaded on %s", name, host),
		Hint:    "load it there first (apparmor_parser -r PROFILE-FILE)"}
}
