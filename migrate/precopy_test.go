package migrate

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/internal/errdefs"
)

func rounds(pages ...uint64) []PreCopyRound {
	var rs []PreCopyRound
	for i, p := range pages {
		rs = append(rs, PreCopyRound{Round: i + 1, PagesWritten: p})
	}
	return rs
}

func TestPreCopyRule(t *testing.T) {
	const mibPages = 256 // pages per MiB
	rule := PreCopyRule{MaxRounds: 4, GoalBytes: 8 << 20, MaxGrowth: 0.1}
	for _, c := range []struct {
		name   string
		rule   PreCopyRule
		pages  []uint64
		stop   bool
		reason string
	}{
		{"no round yet", rule, nil, false, ""},
		{"first round copies everything", rule, []uint64{256 * mibPages}, false, ""},
		{"shrinking, above the goal", rule, []uint64{256 * mibPages, 64 * mibPages, 20 * mibPages}, false, ""},
		{"at the goal", rule, []uint64{256 * mibPages, 8 * mibPages}, true, "≤ goal 8.0 MiB"},
		{"below the goal in round one", rule, []uint64{2 * mibPages}, true, "round 1 copied 2.0 MiB ≤ goal"},
		{"idle container", rule, []uint64{256 * mibPages, 0}, true, "≤ goal"},
		{"within the growth allowance", rule, []uint64{256 * mibPages, 100 * mibPages, 110 * mibPages}, false, ""},
		{"growing", rule, []uint64{256 * mibPages, 100 * mibPages, 111 * mibPages}, true, "more than round 2's 100.0 MiB + 10%"},
		{"growth checked before the cap", rule, []uint64{256 * mibPages, 60 * mibPages, 50 * mibPages, 70 * mibPages}, true, "faster than it is copied"},
		{"max rounds", rule, []uint64{256 * mibPages, 128 * mibPages, 64 * mibPages, 32 * mibPages}, true, "4 round(s), the maximum"},
		{"one round allowed", PreCopyRule{MaxRounds: 1, GoalBytes: 0}, []uint64{256 * mibPages}, true, "1 round(s), the maximum"},
		{"zero growth: an equal round is not growth", PreCopyRule{MaxRounds: 9, MaxGrowth: 0}, []uint64{10 * mibPages, 10 * mibPages}, false, ""},
		{"zero growth stops on any growth", PreCopyRule{MaxRounds: 9, MaxGrowth: 0}, []uint64{10 * mibPages, 10*mibPages + 1}, true, "+ 0%"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stop, why := c.rule.Next(rounds(c.pages...))
			if stop != c.stop || !strings.Contains(why, c.reason) {
				t.Fatalf("Next(%v) = %v %q; want %v, reason containing %q", c.pages, stop, why, c.stop, c.reason)
			}
			if stop && why == "" {
				t.Fatal("a stop without a reason")
			}
		})
	}
}

func TestPreCopyRuleValidate(t *testing.T) {
	if err := DefaultPreCopyRule.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []PreCopyRule{{MaxRounds: 0}, {MaxRounds: MaxPreCopyRounds + 1}, {MaxRounds: 2, GoalBytes: -1}, {MaxRounds: 2, MaxGrowth: -0.5}} {
		if err := r.Validate(); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%+v: %v", r, err)
		}
	}
}
