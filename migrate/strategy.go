package migrate

import (
	"fmt"
	"time"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// Auto lets Choose pick the strategy.
const Auto = "auto"

// DefaultMaxDowntime is what auto aims for when the operator says nothing.
const DefaultMaxDowntime = time.Second

// Measured on the lab (stop-and-copy, disk-less): ~0.65 s of fixed work (freeze, dump setup,
// final sync, metadata, restore, commit) plus the memory through a pipeline that reaches about
// three quarters of the raw link rate.
const (
	fixedDowntime  = 650 * time.Millisecond
	pipelineFactor = 0.75
)

// StrategyInput is what the choice depends on.
type StrategyInput struct {
	Requested   string // auto, stop-copy, pre-copy, post-copy
	MaxDowntime time.Duration
	Source      wire.HostFacts
	Target      wire.HostFacts
	MemoryBytes uint64
	LinkBps     float64 // measured link throughput, bytes per second (0: unknown)
}

// Choice is the strategy and why.
type Choice struct {
	Strategy string
	Reason   string
	Estimate time.Duration // estimated stop-and-copy downtime (0: not estimated)
}

// EstimateStopCopy estimates stop-and-copy's downtime for memory bytes over a link.
func EstimateStopCopy(memory uint64, linkBps float64) time.Duration {
	if linkBps <= 0 {
		return 0
	}
	return fixedDowntime + time.Duration(float64(memory)/(linkBps*pipelineFactor)*float64(time.Second))
}

// preCopyWhy and postCopyWhy say why a strategy cannot run ("" if it can).
func preCopyWhy(in StrategyInput) string {
	if !in.Source.SoftDirty {
		return fmt.Sprintf("pre-copy needs soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY), which %s's kernel lacks", in.Source.Host)
	}
	return ""
}

func postCopyWhy(in StrategyInput) string {
	switch {
	case !in.Target.Userfaultfd:
		return fmt.Sprintf("post-copy needs userfaultfd on %s (criu check --feature uffd-noncoop fails)", in.Target.Host)
	case in.Source.LazyDump != "":
		return in.Source.LazyDump + " (on " + in.Source.Host + ")"
	}
	return ""
}

// Choose picks the strategy (pure). An explicitly requested strategy that cannot run here is an
// error naming why; auto takes stop-and-copy when its estimated downtime fits, else pre-copy
// where dirty memory can be tracked, else post-copy, else stop-and-copy anyway.
func Choose(in StrategyInput) (Choice, error) {
	if in.MaxDowntime <= 0 {
		in.MaxDowntime = DefaultMaxDowntime
	}
	est := EstimateStopCopy(in.MemoryBytes, in.LinkBps)
	switch in.Requested {
	case StopCopy:
		return Choice{StopCopy, "stop-copy (requested)", est}, nil
	case PreCopy:
		if why := preCopyWhy(in); why != "" {
			return Choice{}, fmt.Errorf("%s: %w", why, errdefs.ErrUnsupported)
		}
		return Choice{PreCopy, "pre-copy (requested)", est}, nil
	case PostCopy:
		if why := postCopyWhy(in); why != "" {
			return Choice{}, fmt.Errorf("%s: %w", why, errdefs.ErrUnsupported)
		}
		return Choice{PostCopy, "post-copy (requested)", est}, nil
	case Auto, "":
	default:
		return Choice{}, fmt.Errorf("unknown strategy %q (auto, stop-copy, pre-copy, post-copy): %w", in.Requested, errdefs.ErrInvalid)
	}
	mem := float64(in.MemoryBytes) / (1 << 20)
	if est > 0 && est <= in.MaxDowntime {
		return Choice{StopCopy, fmt.Sprintf("auto: stop-copy, estimated downtime %s for %.0f MiB at %.0f MB/s ≤ max %s", est.Round(time.Millisecond), mem, in.LinkBps/1e6, in.MaxDowntime), est}, nil
	}
	over := fmt.Sprintf("estimated stop-copy downtime %s for %.0f MiB at %.0f MB/s > max %s", est.Round(time.Millisecond), mem, in.LinkBps/1e6, in.MaxDowntime)
	if est == 0 {
		over = "the link could not be measured"
	}
	pre, post := preCopyWhy(in), postCopyWhy(in)
	switch {
	case pre == "":
		return Choice{PreCopy, "auto: pre-copy, " + over, est}, nil
	case post == "":
		return Choice{PostCopy, "auto: post-copy, " + over + "; " + pre, est}, nil
	}
	return Choice{StopCopy, "auto: stop-copy, " + over + ", but " + pre + " and " + post, est}, nil
}
