package receiver

import (
	"fmt"

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
