package workloadstate

import (
	"strings"
	"testing"
)

func good() (Record, State, State, []byte, []byte) {
	rec := Record{Nonce: "n1", MemMiB: 64, LastCounter: 100, Volume: "/srv/v"}
	s1 := State{Nonce: "n1", PID: 1, Counter: 200, UpdatedUnixMs: 2000, MemMiB: 64, TicksLines: 3, VolumeMiB: 8, VolumeLogLines: 2}
	s2 := s1
	s2.Counter, s2.UpdatedUnixMs = 230, 2300
	s2.Verify = &Verification{ID: "req"}
	return rec, s1, s2, []byte("10\n20\n30\n"), []byte("20\n30\n")
}

func TestVerifyAcceptsIntactWorkload(t *testing.T) {
	rec, s1, s2, ticks, vlog := good()
	if p := Verify(rec, s1, s2, "req", ticks, vlog); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
}

func TestVolumeLogLoss(t *testing.T) {
	rec, s1, s2, ticks, _ := good()
	if p := Verify(rec, s1, s2, "req", ticks, []byte("20\n")); !strings.Contains(strings.Join(p, ";"), "volume log") {
		t.Fatalf("lost volume write not found: %v", p)
	}
}

func TestVerifyFindsEachLoss(t *testing.T) {
	cases := map[string]struct {
		mut  func(*Record, *State, *State, *[]byte)
		want string
	}{
		"no answer":      {func(r *Record, a, b *State, t *[]byte) { b.Verify = nil }, "did not answer"},
		"volume corrupt": {func(r *Record, a, b *State, t *[]byte) { b.Verify.VolErrors = 2 }, "2 volume blocks differ"},
		"no volume":      {func(r *Record, a, b *State, t *[]byte) { b.VolumeMiB = 0 }, "has no volume"},
		"restarted":      {func(r *Record, a, b *State, t *[]byte) { b.Nonce = "n2" }, "restarted"},
		"counter back":   {func(r *Record, a, b *State, t *[]byte) { r.LastCounter = 999 }, "went back"},
		"frozen":         {func(r *Record, a, b *State, t *[]byte) { b.Counter = a.Counter }, "not running"},
		"corrupt memory": {func(r *Record, a, b *State, t *[]byte) { b.Errors = 3 }, "corrupt"},
		"lost writes":    {func(r *Record, a, b *State, t *[]byte) { *t = []byte("10\n30\n40\n") }, "jumps"},
		"short file":     {func(r *Record, a, b *State, t *[]byte) { *t = []byte("10\n20\n") }, "lost"},
		"fs ahead":       {func(r *Record, a, b *State, t *[]byte) { b.Counter = 25; a.Counter = 24 }, "older than the filesystem"},
		"wrong size":     {func(r *Record, a, b *State, t *[]byte) { b.MemMiB = 32 }, "holds 32 MiB"},
	}
	for name, c := range cases {
		rec, s1, s2, ticks, vlog := good()
		c.mut(&rec, &s1, &s2, &ticks)
		p := Verify(rec, s1, s2, "req", ticks, vlog)
		if !strings.Contains(strings.Join(p, "; "), c.want) {
			t.Errorf("%s: problems %v, want one mentioning %q", name, p, c.want)
		}
	}
}
