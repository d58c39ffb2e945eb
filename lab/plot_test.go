package lab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/migrate"
)

func TestPlot(t *testing.T) {
	d := t.TempDir()
	r := BenchMemResult{Machine: map[string]string{"cpus": "2", "kernel": "6.1"}, SizesMiB: []int{64, 256},
		Runs: []BenchMemRun{{Strategy: "stop-copy", MemMiB: 256, From: "a", To: "b", DowntimeMs: 2000,
			Phases: []migrate.Phase{{Name: "preflight", StartMs: 0, EndMs: 400}, {Name: "dump", StartMs: 450, EndMs: 1800}}}},
		Summary: []BenchMemSummary{{Method: "stop-copy", MemMiB: 64, DowntimeMs: 900}, {Method: "stop-copy", MemMiB: 256, DowntimeMs: 2000},
			{Method: "podman", MemMiB: 64, DowntimeMs: 2300}, {Method: "podman", MemMiB: 256, DowntimeMs: 5100}}}
	b, _ := json.Marshal(r)
	p := filepath.Join(d, "mem.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := Plot(p, d)
	if err != nil || len(files) != 2 {
		t.Fatalf("files %v, err %v", files, err)
	}
	svg, _ := os.ReadFile(filepath.Join(d, "downtime.svg"))
	tl, _ := os.ReadFile(filepath.Join(d, "timeline.svg"))
	for _, want := range []string{"<svg", "stop-copy", "Podman"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("downtime.svg lacks %q", want)
		}
	}
	for _, want := range []string{"<svg", "preflight", "dump", "one stop-copy move of 256 MiB"} {
		if !strings.Contains(string(tl), want) {
			t.Errorf("timeline.svg lacks %q", want)
		}
	}
}
