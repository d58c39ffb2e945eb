package migrate

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestReportJSONHasTheOperatorFields(t *testing.T) {
	r := &Report{ID: "m-1", Container: "web", Source: "a", Target: "b", Strategy: "stop-copy", FSDriver: "rsync",
		StartedAt: time.Unix(0, 0), DowntimeMs: 812.5, Outcome: OutcomeCommitted,
		Phases: []Phase{{Name: "dump", StartMs: 10, EndMs: 200}}}
	r.addStream("checkpoint", 100)
	r.addStream("checkpoint", 23)
	r.CRIU.PagesWritten, r.CRIU.PagesRestored, r.CRIU.FrozenTimeMs = 5, 5, 150
	var m map[string]any
	if err := json.Unmarshal(r.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"strategy", "fs_driver", "phases", "downtime_ms", "streams", "criu", "outcome"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if m["downtime_ms"].(float64) != 812.5 {
		t.Errorf("downtime_ms = %v", m["downtime_ms"])
	}
	st := m["streams"].([]any)
	if len(st) != 1 || st[0].(map[string]any)["bytes"].(float64) != 123 {
		t.Errorf("streams = %v (bytes of one stream must add up)", st)
	}
	crit := m["criu"].(map[string]any)
	for _, k := range []string{"frozen_time_ms", "pages_written", "pages_restored"} {
		if _, ok := crit[k]; !ok {
			t.Errorf("criu lacks %q", k)
		}
	}
	if _, ok := m["error"]; ok {
		t.Error("a successful report carries an error field")
	}
}

func TestReportText(t *testing.T) {
	ok := &Report{Container: "web", Source: "a", Target: "b", Strategy: "stop-copy", FSDriver: "rsync", DowntimeMs: 1500, TotalMs: 2000, Outcome: OutcomeCommitted}
	ok.addStream("checkpoint", 64<<20)
	if s := ok.Text(); !strings.Contains(s, "downtime   1.50 s") || !strings.Contains(s, "checkpoint 64.0 MiB") {
		t.Errorf("text:\n%s", s)
	}
	refused := &Report{Container: "web", Source: "a", Target: "b", Outcome: OutcomeRefused, Problems: []string{"name taken"}}
	if s := refused.Text(); !strings.Contains(s, "nothing was changed") || !strings.Contains(s, "name taken") {
		t.Errorf("text:\n%s", s)
	}
	failed := &Report{Container: "web", Source: "a", Target: "b", Outcome: OutcomeRolledBack, Error: "boom", Rollback: []string{"thaw the source"}}
	if s := failed.Text(); !strings.Contains(s, "failed (rolled_back): boom") || !strings.Contains(s, "thaw the source") {
		t.Errorf("text:\n%s", s)
	}
}
