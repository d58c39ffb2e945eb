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
