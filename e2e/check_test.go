package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/ferry-project/ferry/checkpoint"
	ferrymigrate "github.com/ferry-project/ferry/migrate"
)

// TestCheckGolden: `ferry check b chk` on the lab prints exactly testdata/check.golden, where the
// values that depend on the machine (kernel, versions, kernel features) come from the same
// check's JSON and measured numbers are masked (the lab configures b's ZFS parent; it is usable
// when the lab runs zfs-fuse). check changes
// nothing: the container still runs on a afterwards, and a check naming a container whose name
// is taken on b says NOT OK with the reason and exit status 3.
func TestCheckGolden(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "chk", "--mem", "16")
	defer mustLab(t, "rm", "a", "chk")

	r := lab(t, "exec", "a", "--", "ferry", "check", "b", "chk", "--output", "json")
	if r.code != 0 && r.code != 3 {
		t.Fatalf("check -o json: exit %d: %s", r.code, r.stderr)
	}
	var rep ferrymigrate.CheckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check printed no JSON (%v): %s", err, r.stdout)
	}
	text := mustLab(t, "exec", "a", "--", "ferry", "check", "b", "chk")

	golden, err := os.ReadFile("testdata/check.golden")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template.Must(template.New("golden").Funcs(template.FuncMap{
		"criu":  checkpoint.FormatVersion,
		"yesno": func(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] },
		"zfscell": func(s string, source bool) string {
			if (source && s == "ok") || (!source && s != "" && !strings.Contains(s, " ")) {
				return s
			}
			return "no: " + ferrymigrate.ShortMessage(s)
		},
		"can": func(s []ferrymigrate.StrategyCan, i int) string {
			if s[i].Available {
				return "yes"
			}
			return "no: " + s[i].Why
		},
	}).Parse(string(golden)))
	var want bytes.Buffer
	if err := tmpl.Execute(&want, rep); err != nil {
		t.Fatal(err)
	}
	got := text
	if norm(got) != norm(want.String()) {
		t.Errorf("ferry check output differs from testdata/check.golden.\n--- got (normalized)\n%s\n--- want (normalized)\n%s", norm(got), norm(want.String()))
	}
	if st := containers(t, "a")["chk"]; st != "running" {
		t.Errorf("after check the container on a is %q", st)
	}
	if _, ok := containers(t, "b")["chk"]; ok {
		t.Error("check created the container on b")
	}

	// A name taken on b: not OK, exit 3, the reason printed.
	mustLab(t, "run", "b", "chk", "--mem", "16")
	defer mustLab(t, "rm", "b", "chk")
	r = lab(t, "exec", "a", "--", "ferry", "check", "b", "chk")
	if r.code != 3 || !strings.Contains(r.stdout, "NOT OK") || !strings.Contains(r.stdout, `a container named "chk" already exists on b`) {
		t.Errorf("check with the name taken: exit %d\n%s", r.code, r.stdout)
	}
}

var (
	numbers = regexp.MustCompile(`\b[0-9]+(\.[0-9]+)?`)
	spaces  = regexp.MustCompile(`[ \t]+`)
)

// norm masks measured numbers (N) and free space (GIB), and collapses runs of blanks: the
// golden fixes the layout and words, not the machine's figures.
func norm(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		l = strings.TrimRight(spaces.ReplaceAllString(l, " "), " ")
		if strings.HasPrefix(l, " free space") {
			l = " free space GIB GIB"
		}
		if !strings.Contains(l, "kernel") && !strings.Contains(l, "CRIU") && !strings.Contains(l, "containerd") && !strings.Contains(l, "rsync") {
			l = numbers.ReplaceAllString(l, "N")
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestBenchLink: `ferry bench b` sends the same bytes through ferry's stream, a plain OpenSSH
// pipe and rsync, and estimates stop-copy's downtime from ferry's rate; nothing is left on b.
func TestBenchLink(t *testing.T) {
	requireLab(t)
	r := lab(t, "exec", "a", "--", "ferry", "bench", "b", "--bytes", "16M", "--output", "json")
	if r.code != 0 {
		t.Fatalf("ferry bench: exit %d: %s", r.code, r.stderr)
	}
	var rep struct {
		Bytes   int64 `json:"bytes"`
		Methods []struct {
			Method  string  `json:"method"`
			Ms      float64 `json:"ms"`
			MBps    float64 `json:"mb_per_s"`
			Skipped string  `json:"skipped"`
		} `json:"methods"`
		Estimates []struct {
			MemoryMiB  int     `json:"memory_mib"`
			DowntimeMs float64 `json:"downtime_ms"`
		} `json:"stop_copy_estimates"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("no JSON (%v): %s", err, r.stdout)
	}
	if rep.Bytes != 16<<20 || len(rep.Methods) != 3 || len(rep.Estimates) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	for i, m := range rep.Methods {
		if m.Method != []string{"ferry-stream", "openssh", "rsync"}[i] || m.Skipped != "" || m.Ms <= 0 || m.MBps <= 0 {
			t.Errorf("method %d: %+v", i, m)
		}
	}
	if !(rep.Estimates[0].DowntimeMs < rep.Estimates[1].DowntimeMs && rep.Estimates[1].DowntimeMs < rep.Estimates[2].DowntimeMs) {
		t.Errorf("estimates do not grow with memory: %+v", rep.Estimates)
	}
	if out := mustLab(t, "exec", "b", "--", "sh", "-c", "ls -d /tmp/ferry-bench-* 2>/dev/null || true"); strings.TrimSpace(out) != "" {
		t.Errorf("ferry bench left %s on b", out)
	}
}
