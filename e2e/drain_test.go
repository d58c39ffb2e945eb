package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestDrain: six workloads on a, drained to b two at a time, one of them unable to move (b
// already has a container of its name): five arrive intact (ferry-lab check on b), the sixth
// still runs on a untouched, the exit status is non-zero, and the JSON report says exactly that.
// An excluded container stays where it is.
func TestDrain(t *testing.T) {
	requireLab(t)
	var names []string
	for i := 1; i <= 6; i++ {
		names = append(names, fmt.Sprintf("dr-%d", i))
	}
	for _, n := range names {
		mustLab(t, "run", "a", n, "--mem", "16")
	}
	mustLab(t, "run", "a", "dr-stay", "--mem", "16")
	mustLab(t, "run", "b", "dr-4", "--mem", "16") // the move of dr-4 is refused
	defer func() {
		for _, n := range append(names, "dr-stay") {
			lab(t, "rm", "a", n)
			lab(t, "rm", "b", n)
		}
	}()
	r := lab(t, "exec", "a", "--", "ferry", "drain", "--to", "b", "--concurrency", "2", "--exclude", "dr-stay", "--strategy", "stop-copy", "--output", "json")
	if r.code != 3 {
		t.Errorf("drain with one refusal: exit %d, want 3\nstderr: %s", r.code, r.stderr)
	}
	var rep struct {
		Target      string   `json:"target"`
		Concurrency int      `json:"concurrency"`
		Moved       int      `json:"moved"`
		Failed      int      `json:"failed"`
		Excluded    []string `json:"excluded"`
		Containers  []struct {
			Name       string  `json:"name"`
			Outcome    string  `json:"outcome"`
			DowntimeMs float64 `json:"downtime_ms"`
			Error      string  `json:"error"`
			Report     *report `json:"report"`
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("drain printed no JSON report (%v):\n%s", err, r.stdout)
	}
	if rep.Target != "b" || rep.Concurrency != 2 || rep.Moved != 5 || rep.Failed != 1 || len(rep.Containers) != 6 ||
		len(rep.Excluded) != 1 || rep.Excluded[0] != "dr-stay" {
		t.Fatalf("report: %+v", rep)
	}
	for i, c := range rep.Containers {
		if c.Name != names[i] || c.Report == nil {
			t.Errorf("entry %d: %+v", i, c)
			continue
		}
		if c.Name == "dr-4" {
			if c.Outcome != "refused" || !strings.Contains(c.Error, `a container named "dr-4" already exists on b`) {
				t.Errorf("dr-4: outcome %s, error %q", c.Outcome, c.Error)
			}
			continue
		}
		if c.Outcome != "committed" || c.DowntimeMs <= 0 || c.Report.ID == "" {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	onA, onB := containers(t, "a"), containers(t, "b")
	for _, n := range names {
		if n == "dr-4" {
			if onA[n] != "running" {
				t.Errorf("dr-4 on a is %q, want running (its move was refused)", onA[n])
			}
			mustLab(t, "check", "a", n)
			continue
		}
		if _, ok := onA[n]; ok {
			t.Errorf("%s is still on a after it moved", n)
		}
		if onB[n] != "running" {
			t.Errorf("%s on b is %q", n, onB[n])
		}
		mustLab(t, "check", "b", n)
	}
	if onA["dr-stay"] != "running" {
		t.Errorf("the excluded container on a is %q", onA["dr-stay"])
	}
	mustLab(t, "check", "a", "dr-stay")
}

// TestDrainShipsTheImageOnce: draining three containers of one image to a host that lacks it,
// all at once: the moves take turns shipping it (the first ships it, the others find it there),
// all three arrive intact, and b keeps the image.
func TestDrainShipsTheImageOnce(t *testing.T) {
	requireLab(t)
	names := []string{"dri-1", "dri-2", "dri-3"}
	for _, n := range names {
		mustLab(t, "run", "a", n, "--mem", "16")
	}
	defer func() {
		for _, n := range names {
			lab(t, "rm", "a", n)
			lab(t, "rm", "b", n)
		}
	}()
	mustLab(t, "exec", "b", "--", "ctr", "image", "rm", "--sync", labImage)
	defer lab(t, "exec", "b", "--", "sh", "-c", "ctr image ls -q | grep -q workload || ctr image import --all-platforms /var/lib/ferry-lab/image/workload.tar")
	r := lab(t, "exec", "a", "--", "ferry", "drain", "--to", "b", "--concurrency", "3", "--strategy", "stop-copy", "--output", "json")
	var rep struct {
		Moved      int `json:"moved"`
		Containers []struct {
			Name    string  `json:"name"`
			Outcome string  `json:"outcome"`
			Error   string  `json:"error"`
			Report  *report `json:"report"`
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("no JSON report (%v): %s\n%s", err, r.stdout, r.stderr)
	}
	shipped := 0
	for _, c := range rep.Containers {
		if c.Outcome != "committed" {
			t.Errorf("%s: %s: %s", c.Name, c.Outcome, c.Error)
			continue
		}
		if c.Report.bytesOf("image") > 1<<20 {
			shipped++
		}
	}
	if r.code != 0 || rep.Moved != 3 || shipped != 1 {
		t.Fatalf("exit %d, moved %d, image shipped by %d moves (want 1)", r.code, rep.Moved, shipped)
	}
	for _, n := range names {
		mustLab(t, "check", "b", n)
	}
	if out := mustLab(t, "exec", "b", "--", "ctr", "image", "ls", "-q"); !strings.Contains(out, labImage) {
		t.Errorf("b has no image after the drain")
	}
}
