package receiver

import (
	"fmt"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/transport/wire"
)

// spaceMargin is kept free beyond the estimate (logs, CRIU work files, rounding).
const spaceMargin = 64 << 20

// TargetProblems checks the target's facts against the migration's needs (pure).
func TargetProblems(t wire.HostFacts, req wire.PreflightRequest) []wire.Problem {
	var p []wire.Problem
	switch {
	case t.CRIUVersion == 0:
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU is not usable on %s: %s", t.Host, t.CRIUCheck), Hint: "install CRIU ≥ 4.0 there (make deps)"})
	case t.CRIUVersion < checkpoint.MinVersion:
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU on %s is %s; ferry needs ≥ %s", t.Host, checkpoint.FormatVersion(t.CRIUVersion), checkpoint.FormatVersion(checkpoint.MinVersion)), Hint: "install a newer CRIU there (make deps)"})
	case t.CRIUCheck != "":
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("`criu check` fails on %s: %s", t.Host, t.CRIUCheck), Hint: "the kernel or CRIU build lacks what checkpoint/restore needs"})
	case req.Source.CRIUVersion > t.CRIUVersion:
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU on %s (%s) is older than on %s (%s): images may not restore", t.Host, checkpoint.FormatVersion(t.CRIUVersion), req.Source.Host, checkpoint.FormatVersion(req.Source.CRIUVersion)), Hint: "upgrade CRIU on the target"})
	}
	if t.Rsync == "" {
		p = append(p, wire.Problem{Code: "unsupported", Message: "rsync is not installed on " + t.Host, Hint: "install rsync there (make deps)"})
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
