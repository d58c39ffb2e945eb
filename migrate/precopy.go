package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/relay"
	"github.com/ferry-project/ferry/transport/wire"
)

// PreCopyRule decides when pre-copy stops iterating and takes the final (frozen) dump. Each
// round copies what the container wrote since the previous one while it keeps running; the
// rounds are worth it while what they copy shrinks.
type PreCopyRule struct {
	// MaxRounds caps the pre-dumps (1…MaxPreCopyRounds).
	MaxRounds int `json:"max_rounds"`
	// GoalBytes: stop once a round copied at most this much — the final dump will send about
	// as much while frozen.
	GoalBytes int64 `json:"goal_bytes"`
	// MaxGrowth: stop when a round copied more than (1 + MaxGrowth) × the previous round: the
	// container writes faster than the link drains it, and more rounds would not converge.
	MaxGrowth float64 `json:"max_growth"`
}

// MaxPreCopyRounds bounds MaxRounds (every round holds a socket open in CRIU).
const MaxPreCopyRounds = 16

// DefaultPreCopyRule stops as soon as a round copies more than the one before: once the dirty
// set stops shrinking, more rounds only add time (P.Haul allows 10% growth).
var DefaultPreCopyRule = PreCopyRule{MaxRounds: 5, GoalBytes: 16 << 20, MaxGrowth: 0}

// Validate checks the rule.
func (r PreCopyRule) Validate() error {
	switch {
	case r.MaxRounds < 1 || r.MaxRounds > MaxPreCopyRounds:
		return fmt.Errorf("pre-copy rounds %d: want 1…%d: %w", r.MaxRounds, MaxPreCopyRounds, errdefs.ErrInvalid)
	case r.GoalBytes < 0:
		return fmt.Errorf("pre-copy goal %d bytes: %w", r.GoalBytes, errdefs.ErrInvalid)
	case r.MaxGrowth < 0:
		return fmt.Errorf("pre-copy growth %.2f: want ≥ 0: %w", r.MaxGrowth, errdefs.ErrInvalid)
	}
	return nil
}

// PreCopyRound is one pre-dump, as the report shows it.
type PreCopyRound struct {
	Round        int     `json:"round"`
	PagesWritten uint64  `json:"pages_written"`
	PagesSkipped uint64  `json:"pages_skipped_parent"` // unchanged since the previous round
	Bytes        int64   `json:"bytes"`                // through the round's page stream
	DurationMs   float64 `json:"duration_ms"`
	FrozenTimeMs float64 `json:"frozen_time_ms"` // CRIU froze the tasks this long to collect pages
}

// pageSize is what CRIU counts pages in.
const pageSize = 4096

// Next says whether to stop after the rounds so far, and why (pure).
func (r PreCopyRule) Next(rounds []PreCopyRound) (stop bool, why string) {
	n := len(rounds)
	if n == 0 {
		return false, ""
	}
	last := rounds[n-1]
	wrote := int64(last.PagesWritten) * pageSize
	switch {
	case wrote <= r.GoalBytes:
		return true, fmt.Sprintf("round %d copied %s ≤ goal %s", n, mib(wrote), mib(r.GoalBytes))
	case n >= 2 && float64(last.PagesWritten) > float64(rounds[n-2].PagesWritten)*(1+r.MaxGrowth):
		return true, fmt.Sprintf("round %d copied %s, more than round %d's %s + %.0f%%: memory is written faster than it is copied",
			n, mib(wrote), n-1, mib(int64(rounds[n-2].PagesWritten)*pageSize), r.MaxGrowth*100)
	case n >= r.MaxRounds:
		return true, fmt.Sprintf("%d round(s), the maximum (the last copied %s)", n, mib(wrote))
	}
	return false, ""
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// PreCopyReport is what pre-copy did, in the report.
type PreCopyReport struct {
	Rule   PreCopyRule    `json:"rule"`
	Rounds []PreCopyRound `json:"rounds"`
	Stop   string         `json:"stop"` // why it stopped iterating
}

// preCopy is the state of a pre-copy migration on the source.
type preCopy struct {
	sess  PreCopySession
	ours  []*os.File // our ends of the page server sockets: one per round, the last the dump's
	sums  []wire.StreamSum
	last  string // the last round's images, relative to the dump's
	ended bool
}

// end stops CRIU's session and closes the sockets (idempotent). CRIU's exit status is only
// logged: after a failed round it is expected to be an error, and either way it is gone.
func (p *preCopy) end(log *slog.Logger) {
	if p.ended {
		return
	}
	p.ended = true
	closeAll(p.ours)
	if err := p.sess.Close(); err != nil {
		log.Warn("pre-copy: CRIU's session ended with an error", "err", err)
	}
}

// preCopy runs the pre-dumps while the container runs, each to its own page server on the
// target (pre-1, pre-2, …, each linked to the previous), until the rule says stop.
func (m *run) preCopy(ctx context.Context) error {
	c, rule := m.cfg, m.cfg.PreCopy
	m.rep.PreCopy = &PreCopyReport{Rule: rule}
	var theirs []*os.File
	p := &preCopy{}
	for i := 0; i <= rule.MaxRounds; i++ {
		ours, th, err := relay.Pair()
		if err != nil {
			closeAll(p.ours)
			closeAll(theirs)
			return err
		}
		p.ours, theirs = append(p.ours, ours), append(theirs, th)
	}
	sess, err := c.Source.PreCopy(ctx, c.Container, theirs)
	closeAll(theirs)
	if err != nil {
		closeAll(p.ours)
		return err
	}
	p.sess, m.pre = sess, p
	m.r.Add("end the pre-copy session", func(context.Context) error { p.end(m.log); return nil })
	for k := 1; k <= rule.MaxRounds; k++ {
		name := fmt.Sprintf("pre-%d", k)
		spec := DumpSpec{ImagesDir: filepath.Join(m.dir, name), WorkDir: filepath.Join(m.dir, "work", name)}
		for _, d := range []string{spec.ImagesDir, spec.WorkDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		if k > 1 {
			spec.Parent = fmt.Sprintf("../pre-%d", k-1)
		}
		start := time.Now()
		st, sum, err := m.streamPages(ctx, name, p.ours[k-1], func() (*checkpoint.DumpStats, error) {
			return sess.PreDump(ctx, spec)
		})
		if err != nil {
			return fmt.Errorf("pre-copy round %d: %w", k, err)
		}
		p.sums, p.last = append(p.sums, *sum), "../"+name
		m.rep.PreCopy.Rounds = append(m.rep.PreCopy.Rounds, PreCopyRound{
			Round: k, PagesWritten: st.PagesWritten, PagesSkipped: st.PagesSkipped, Bytes: sum.Bytes,
			DurationMs: ms(time.Since(start)), FrozenTimeMs: ms(st.FrozenTime),
		})
		m.log.Info("pre-copy round", "round", k, "pages_written", st.PagesWritten, "bytes", sum.Bytes)
		if stop, why := rule.Next(m.rep.PreCopy.Rounds); stop {
			m.rep.PreCopy.Stop = why
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// preCopyDump is pre-copy's final dump, of the frozen container: only what changed since the
// last round goes to the target.
func (m *run) preCopyDump(ctx context.Context, spec DumpSpec) (*checkpoint.DumpStats, error) {
	p := m.pre
	spec.Parent = p.last
	st, sum, err := m.streamPages(ctx, "pages", p.ours[len(p.ours)-1], func() (*checkpoint.DumpStats, error) {
		return p.sess.Dump(ctx, spec)
	})
	p.end(m.log)
	if err != nil {
		return nil, err
	}
	// CRIU links the dump's images to the last round's; the target makes its own link.
	if err := os.Remove(filepath.Join(spec.ImagesDir, "parent")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	m.pages = sum
	return st, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
