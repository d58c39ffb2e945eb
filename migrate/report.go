package migrate

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ferry-project/ferry/transport/wire"
)

// Outcomes of a migration.
const (
	OutcomeCommitted          = "committed"           // the container runs on the target; the source copy is gone
	OutcomeRefused            = "refused"             // preflight said no; nothing changed
	OutcomeRolledBack         = "rolled_back"         // failed; the source runs as before, the target is clean
	OutcomeRollbackIncomplete = "rollback_incomplete" // failed, and some undo step failed too (see error)
	OutcomeInDoubt            = "in_doubt"            // COMMIT sent, its outcome unknown: the source stays frozen
	// The target runs the container, but post-copy's fill did not finish: the target may lack
	// pages, and the source copy stays frozen with all of them (see error).
	OutcomeCommittedIncomplete = "committed_incomplete"
	OutcomeChecked             = "checked" // ferry check: the preflight passed; nothing changed
)

// Phase is one step's span, in milliseconds since the migration started.
type Phase struct {
	Name    string  `json:"name"`
	StartMs float64 `json:"start_ms"`
	EndMs   float64 `json:"end_ms"`
	Error   string  `json:"error,omitempty"`
}

// StreamStats are the bytes one stream carried.
type StreamStats struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// CRIUStats are CRIU's own figures.
type CRIUStats struct {
	FrozenTimeMs   float64 `json:"frozen_time_ms"` // tasks frozen by CRIU during the dump
	MemdumpTimeMs  float64 `json:"memdump_time_ms"`
	MemwriteTimeMs float64 `json:"memwrite_time_ms"`
	PagesScanned   uint64  `json:"pages_scanned"`
	PagesWritten   uint64  `json:"pages_written"`
	PagesSkipped   uint64  `json:"pages_skipped_parent"`
	PagesRestored  uint64  `json:"pages_restored"`
	PagesLazy      uint64  `json:"pages_lazy,omitempty"` // post-copy: pages the target fetched after the restore
	RestoreTimeMs  float64 `json:"restore_time_ms"`
	// What the dump wrote on the source host (the pages stream to the target instead).
	LocalBytes     int64 `json:"local_bytes"`
	LocalPageFiles int   `json:"local_page_files"`
}

// Report is everything a migration did. The same struct feeds the human summary and JSON.
type Report struct {
	ID        string `json:"id"`
	Container string `json:"container"`
	Namespace string `json:"namespace"`
	Source    string `json:"source"`
	Target    string `json:"target"`
	Strategy  string `json:"strategy"`
	// StrategyReason says why this strategy (auto's choice, or the operator's).
	StrategyReason string `json:"strategy_reason,omitempty"`
	// Addresses are the container's network addresses when its network namespace moved with
	// it; NetworkHook what the target's network hook did ("ok", or its failure).
	Addresses   []string `json:"addresses,omitempty"`
	NetworkHook string   `json:"network_hook,omitempty"`
	// LinkMBps is the measured link (auto only); EstimatedStopCopyMs stop-copy's estimate.
	LinkMBps            float64 `json:"link_mbps,omitempty"`
	EstimatedStopCopyMs float64 `json:"estimated_stop_copy_ms,omitempty"`
	// Compress and BWLimit are the stream options (none/zstd; bytes per second, 0 = none);
	// WireBytes is what all streams sent after compression.
	Compress   string       `json:"compress"`
	BWLimit    int64        `json:"bwlimit_bytes_per_s,omitempty"`
	WireBytes  int64        `json:"wire_bytes"`
	FSDriver   string       `json:"fs_driver"` // the drivers of the plan, e.g. "rsync" or "rsync+zfs"
	FSPlan     []wire.Mount `json:"fs_plan,omitempty"`
	StartedAt  time.Time    `json:"started_at"`
	TotalMs    float64      `json:"total_ms"`
	DowntimeMs float64      `json:"downtime_ms"` // freeze on the source → task running on the target
	// PreCopy (pre-copy): the rule, each round, and why iterating stopped.
	PreCopy *PreCopyReport `json:"pre_copy,omitempty"`
	// ResidencyMs (post-copy): freeze on the source → every page on the target.
	ResidencyMs float64       `json:"residency_ms,omitempty"`
	Phases      []Phase       `json:"phases"`
	Streams     []StreamStats `json:"streams"`
	CRIU        CRIUStats     `json:"criu"`
	Outcome     string        `json:"outcome"`
	Error       string        `json:"error,omitempty"`
	Problems    []string      `json:"problems,omitempty"` // preflight refusals
	Rollback    []string      `json:"rollback,omitempty"` // undo steps that ran

	mu sync.Mutex // phases and streams may be added from concurrent steps
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *Report) since(t time.Time) float64 { return ms(t.Sub(r.StartedAt)) }

func (r *Report) addStream(name string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.Streams {
		if r.Streams[i].Name == name {
			r.Streams[i].Bytes += n
			return
		}
	}
	r.Streams = append(r.Streams, StreamStats{Name: name, Bytes: n})
}

// JSON renders the report.
func (r *Report) JSON() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// Text renders a human summary.
func (r *Report) Text() string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	switch r.Outcome {
	case OutcomeCommitted:
		w("migrated %s: %s → %s (%s, %s) in %s", r.Container, r.Source, r.Target, r.Strategy, r.FSDriver, dur(r.TotalMs))
		w("  downtime   %s (frozen on %s → running on %s)", dur(r.DowntimeMs), r.Source, r.Target)
		if r.ResidencyMs > 0 {
			w("  residency  %s (frozen → every page on %s; post-copy)", dur(r.ResidencyMs), r.Target)
		}
		if r.StrategyReason != "" {
			w("  strategy   %s", r.StrategyReason)
		}
		if p := r.PreCopy; p != nil {
			var rs []string
			for _, x := range p.Rounds {
				rs = append(rs, fmt.Sprintf("%s in %s", HumanBytes(x.Bytes), dur(x.DurationMs)))
			}
			w("  pre-copy   %d round(s): %s; stopped: %s", len(p.Rounds), strings.Join(rs, ", "), p.Stop)
		}
	case OutcomeRefused:
		w("refused to migrate %s from %s to %s; nothing was changed:", r.Container, r.Source, r.Target)
		for _, p := range r.Problems {
			w("  - %s", p)
		}
		return b.String()
	case OutcomeInDoubt:
		w("migration %s of %s to %s is IN DOUBT: %s", r.ID, r.Container, r.Target, r.Error)
		return b.String()
	case OutcomeCommittedIncomplete:
		w("migration %s of %s to %s is INCOMPLETE: %s", r.ID, r.Container, r.Target, r.Error)
	default:
		w("migration of %s from %s to %s failed (%s): %s", r.Container, r.Source, r.Target, r.Outcome, r.Error)
		if len(r.Rollback) > 0 {
			w("  rolled back: %s", strings.Join(r.Rollback, ", "))
		}
	}
	for _, p := range r.FSPlan {
		where := p.Name
		if p.Path != "" {
			where += " " + p.Path
		}
		w("  fs         %s — %s", where, p.Reason)
	}
	if len(r.Phases) > 0 {
		var ps []string
		for _, p := range r.Phases {
			ps = append(ps, fmt.Sprintf("%s %s", p.Name, dur(p.EndMs-p.StartMs)))
		}
		w("  phases     %s", strings.Join(ps, ", "))
	}
	if len(r.Streams) > 0 {
		var ss []string
		for _, s := range r.Streams {
			ss = append(ss, fmt.Sprintf("%s %s", s.Name, HumanBytes(s.Bytes)))
		}
		w("  bytes      %s", strings.Join(ss, ", "))
	}
	if r.Compress != "" && r.Compress != "none" || r.BWLimit > 0 {
		line := fmt.Sprintf("%s sent", HumanBytes(r.WireBytes))
		if r.Compress != "" && r.Compress != "none" {
			line += " compressed with " + r.Compress
		}
		if r.BWLimit > 0 {
			line += fmt.Sprintf(", limited to %s/s", HumanBytes(r.BWLimit))
		}
		w("  wire       %s", line)
	}
	if r.CRIU.PagesWritten > 0 {
		w("  CRIU       %d pages written, %d restored; tasks frozen by CRIU %s, restore %s", r.CRIU.PagesWritten, r.CRIU.PagesRestored, dur(r.CRIU.FrozenTimeMs), dur(r.CRIU.RestoreTimeMs))
	}
	return b.String()
}

func dur(msec float64) string {
	if msec < 1000 {
		return fmt.Sprintf("%.0f ms", msec)
	}
	return fmt.Sprintf("%.2f s", msec/1000)
}

// HumanBytes prints a byte count with a binary unit (B, KiB, MiB, GiB).
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
