package receiver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/transport/wire"
)

func TestTargetProblems(t *testing.T) {
	good := wire.HostFacts{Host: "b", CRIUVersion: 40101, Rsync: "3.2.7", FreeBytes: 10 << 30}
	req := wire.PreflightRequest{Source: wire.HostFacts{Host: "a", CRIUVersion: 40101}, ImageBytes: 256 << 20, FSBytes: 1 << 20}
	if p := TargetProblems(good, req); len(p) != 0 {
		t.Fatalf("good target refused: %v", p)
	}
	cases := map[string]func(*wire.HostFacts, *wire.PreflightRequest){
		"CRIU is not usable": func(f *wire.HostFacts, _ *wire.PreflightRequest) {
			f.CRIUVersion, f.CRIUCheck = 0, "criu is not installed"
		},
		"ferry needs ≥ 4.0.0": func(f *wire.HostFacts, _ *wire.PreflightRequest) { f.CRIUVersion = 31701 },
		"`criu check` fails": func(f *wire.HostFacts, _ *wire.PreflightRequest) {
			f.CRIUCheck = "vdso: Unexpected rt vDSO area bounds"
		},
		"is older than on a":        func(_ *wire.HostFacts, r *wire.PreflightRequest) { r.Source.CRIUVersion = 40200 },
		"rsync is not installed":    func(f *wire.HostFacts, _ *wire.PreflightRequest) { f.Rsync = "" },
		"the migration needs about": func(f *wire.HostFacts, _ *wire.PreflightRequest) { f.FreeBytes = 200 << 20 },
	}
	for want, mut := range cases {
		f, r := good, req
		mut(&f, &r)
		p := TargetProblems(f, r)
		if len(p) != 1 || !strings.Contains(p[0].Message, want) {
			t.Errorf("%s: %+v", want, p)
		}
	}
}

func TestAppArmorProblem(t *testing.T) {
	dir := t.TempDir()
	saved := apparmorFS
	t.Cleanup(func() { apparmorFS = saved })
	spec := func(profile string) []byte {
		return []byte(`{"process":{"args":["/bin/sh"],"apparmorProfile":"` + profile + `"}}`)
	}
	// No AppArmor on the host.
	apparmorFS = filepath.Join(dir, "absent")
	if p := apparmorProblem(spec(""), "b"); p != nil {
		t.Errorf("unconfined container refused: %v", p)
	}
	if p := apparmorProblem([]byte(`{"process":{}}`), "b"); p != nil {
		t.Errorf("unconfined container refused: %v", p)
	}
	if p := apparmorProblem(spec("ferry-default"), "b"); p == nil || !strings.Contains(p.Message, "has no AppArmor") {
		t.Errorf("confined container on a host without AppArmor: %v", p)
	}
	// AppArmor with some profiles loaded.
	apparmorFS = dir
	if err := os.WriteFile(filepath.Join(dir, "profiles"), []byte("docker-default (enforce)\nferry-default-2 (complain)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := apparmorProblem(spec("docker-default"), "b"); p != nil {
		t.Errorf("loaded profile refused: %v", p)
	}
	if p := apparmorProblem(spec("ferry-default"), "b"); p == nil || !strings.Contains(p.Message, `"ferry-default", which is not loaded on b`) {
		t.Errorf("missing profile (a prefix of a loaded one): %v", p)
	}
}
