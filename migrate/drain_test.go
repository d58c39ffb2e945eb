package migrate

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestDrainBoundedAndGoesOn(t *testing.T) {
	var running, peak atomic.Int32
	move := func(ctx context.Context, name string) (*Report, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		if name == "c3" {
			return &Report{Container: name, Outcome: OutcomeRefused, Problems: []string{"name taken"}}, errors.New("refused: name taken")
		}
		return &Report{Container: name, Outcome: OutcomeCommitted, Strategy: StopCopy, DowntimeMs: 600}, nil
	}
	rep := Drain(context.Background(), []string{"c6", "c1", "c3", "c2", "c5", "c4"}, 2, move)
	if peak.Load() != 2 {
		t.Errorf("at most %d moves ran at once, want exactly 2", peak.Load())
	}
	if rep.Moved != 5 || rep.Failed != 1 || rep.Worst() != OutcomeRefused {
		t.Fatalf("moved %d failed %d worst %q", rep.Moved, rep.Failed, rep.Worst())
	}
	for i, it := range rep.Containers {
		if want := "c" + string(rune('1'+i)); it.Name != want {
			t.Errorf("entry %d is %s, want %s (name order)", i, it.Name, want)
		}
	}
	if c := rep.Containers[2]; c.Outcome != OutcomeRefused || !strings.Contains(c.Error, "name taken") {
		t.Errorf("c3: %+v", c)
	}
	if txt := rep.Text(); !strings.Contains(txt, "5 moved, 1 failed") || !strings.Contains(txt, "c3         refused") {
		t.Errorf("text:\n%s", txt)
	}
}

func TestDrainInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	move := func(ctx context.Context, name string) (*Report, error) {
		cancel() // Ctrl-C during the first move
		return &Report{Container: name, Outcome: OutcomeRolledBack}, context.Canceled
	}
	rep := Drain(ctx, []string{"a", "b", "c"}, 1, move)
	if rep.Moved != 0 || rep.Failed != 3 || rep.Containers[1].Outcome != OutcomeNotAttempted || rep.Worst() != OutcomeRolledBack {
		t.Fatalf("%+v", rep.Containers)
	}
}

// TestDrainWorst: the drain's exit follows the outcome an operator must act on first.
func TestDrainWorst(t *testing.T) {
	for _, c := range []struct {
		outcomes []string
		want     string
	}{
		{[]string{OutcomeCommitted, OutcomeCommitted}, ""},
		{[]string{OutcomeRolledBack, OutcomeCommittedIncomplete, OutcomeRollbackIncomplete}, OutcomeCommittedIncomplete},
		{[]string{OutcomeCommittedIncomplete, OutcomeInDoubt}, OutcomeInDoubt},
		{[]string{OutcomeRefused, OutcomeRolledBack}, OutcomeRolledBack},
	} {
		d := &DrainReport{}
		for _, o := range c.outcomes {
			d.Containers = append(d.Containers, DrainItem{Outcome: o})
		}
		if got := d.Worst(); got != c.want {
			t.Errorf("Worst(%v) = %q, want %q", c.outcomes, got, c.want)
		}
	}
}
