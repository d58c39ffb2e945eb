package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// DrainReport is what `ferry drain` did: one entry per container, in name order.
type DrainReport struct {
	Source      string      `json:"source"`
	Target      string      `json:"target"`
	Namespace   string      `json:"namespace"`
	Concurrency int         `json:"concurrency"`
	StartedAt   time.Time   `json:"started_at"`
	TotalMs     float64     `json:"total_ms"`
	Excluded    []string    `json:"excluded"`
	Moved       int         `json:"moved"`
	Failed      int         `json:"failed"`
	Containers  []DrainItem `json:"containers"`
}

// DrainItem is one container's move.
type DrainItem struct {
	Name       string  `json:"name"`
	Outcome    string  `json:"outcome"` // a migration outcome (committed, refused, rolled_back…)
	Strategy   string  `json:"strategy,omitempty"`
	DowntimeMs float64 `json:"downtime_ms,omitempty"`
	TotalMs    float64 `json:"total_ms"`
	Error      string  `json:"error,omitempty"`
	Report     *Report `json:"report,omitempty"`
}

// MoveFunc moves one container and reports how it went (never nil when it ran at all).
type MoveFunc func(ctx context.Context, name string) (*Report, error)

// Drain moves every container in names with at most concurrency moves at a time. A failed move
// leaves that container where it was (the migration's own guarantee) and the drain goes on.
// Once ctx is cancelled no new move starts; those not started are reported as not attempted.
func Drain(ctx context.Context, names []string, concurrency int, move MoveFunc) *DrainReport {
	concurrency = max(concurrency, 1)
	rep := &DrainReport{Concurrency: concurrency, StartedAt: time.Now(), Containers: make([]DrainItem, len(names))}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, name := range names {
		rep.Containers[i] = DrainItem{Name: name, Outcome: OutcomeNotAttempted}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			rep.Containers[i].Error = "the drain was interrupted before this move started"
			continue
		}
		wg.Add(1)
		go func(it *DrainItem) {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			r, err := move(ctx, it.Name)
			it.TotalMs = ms(time.Since(start))
			if r != nil {
				it.Outcome, it.Strategy, it.DowntimeMs, it.Report = r.Outcome, r.Strategy, r.DowntimeMs, r
			} else {
				it.Outcome = OutcomeRefused
			}
			if err != nil {
				it.Error = err.Error()
				if it.Outcome == "" {
					it.Outcome = OutcomeRolledBack
				}
			}
		}(&rep.Containers[i])
	}
	wg.Wait()
	rep.TotalMs = ms(time.Since(rep.StartedAt))
	sort.SliceStable(rep.Containers, func(i, j int) bool { return rep.Containers[i].Name < rep.Containers[j].Name })
	for _, it := range rep.Containers {
		if it.Outcome == OutcomeCommitted {
			rep.Moved++
		} else {
			rep.Failed++
		}
	}
	return rep
}

// OutcomeNotAttempted is a drain's container whose move never started (the drain was stopped).
const OutcomeNotAttempted = "not_attempted"

// Worst is the most serious outcome among the containers, in the order an operator must act on
// them: in doubt, committed incomplete, rollback incomplete, rolled back, refused, not attempted ("" if all moved).
func (d *DrainReport) Worst() string {
	for _, o := range []string{OutcomeInDoubt, OutcomeCommittedIncomplete, OutcomeRollbackIncomplete, OutcomeRolledBack, OutcomeRefused, OutcomeNotAttempted} {
		if slices.ContainsFunc(d.Containers, func(it DrainItem) bool { return it.Outcome == o }) {
			return o
		}
	}
	return ""
}

// JSON is the report as indented JSON.
func (d *DrainReport) JSON() []byte {
	b, _ := json.MarshalIndent(d, "", "  ")
	return append(b, '\n')
}

// Text is the summary table.
func (d *DrainReport) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "drain %s → %s (namespace %s, %d at a time): %d moved, %d failed, in %s\n\n",
		d.Source, d.Target, d.Namespace, d.Concurrency, d.Moved, d.Failed, dur(d.TotalMs))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tOUTCOME\tSTRATEGY\tDOWNTIME\tTOTAL\tERROR")
	for _, it := range d.Containers {
		down, strategy := "-", "-"
		if it.Outcome == OutcomeCommitted {
			down, strategy = dur(it.DowntimeMs), it.Strategy
		}
		errText := it.Error
		if len(errText) > 120 {
			errText = errText[:117] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Name, it.Outcome, strategy, down, dur(it.TotalMs), errText)
	}
	_ = tw.Flush()
	if len(d.Excluded) > 0 {
		fmt.Fprintf(&b, "\nexcluded: %s\n", strings.Join(d.Excluded, ", "))
	}
	return b.String()
}
