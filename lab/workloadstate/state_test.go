package workloadstate

import (
	"strings"
	"testing"
	"time"
)

func good() (Record, State, State, []byte, time.Time) {
	since := time.UnixMilli(1000)
	rec := Record{Nonce: "n1", MemMiB: 64, LastCounter: 100}
	s1 := State{Nonce: "n1", PID: 1, Counter: 200, UpdatedUnixMs: 2000, MemMiB: 64, LastPassStart: 1500, TicksLines: 3}
	s2 := s1
	s2.Counter, s2.UpdatedUnixMs = 230, 2300
	return rec, s1, s2, []byte("10\n20\n30\n"), since
}

func TestVerifyAcceptsIntactWorkload(t *testing.T) {
	rec, s1, s2, ticks, since := good()
	if p := Verify(rec, s1, s2, ticks, since); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
}

func TestVerifyFindsEachLoss(t *testing.T) {
	cases := map[string]struct {
		mut  func(*Record, *State, *State, *[]byte)
		want string
	}{
		"restarted":      {func(r *Record, a, b *State, t *[]byte) { b.Nonce = "n2" }, "restarted"},
		"counter back":   {func(r *Record, a, b *State, t *[]byte) { r.LastCounter = 999 }, "went back"},
		"frozen":         {func(r *Record, a, b *State, t *[]byte) { b.Counter = a.Counter }, "not running"},
		"corrupt memory": {func(r *Record, a, b *State, t *[]byte) { b.Errors = 3 }, "corrupt"},
		"stale verify":   {func(r *Record, a, b *State, t *[]byte) { b.LastPassStart = 10 }, "verification"},
		"lost writes":    {func(r *Record, a, b *State, t *[]byte) { *t = []byte("10\n30\n40\n") }, "jumps"},
		"short file":     {func(r *Record, a, b *State, t *[]byte) { *t = []byte("10\n20\n") }, "lost"},
		"fs ahead":       {func(r *Record, a, b *State, t *[]byte) { b.Counter = 25; a.Counter = 24 }, "older than the filesystem"},
		"wrong size":     {func(r *Record, a, b *State, t *[]byte) { b.MemMiB = 32 }, "holds 32 MiB"},
	}
	for name, c := range cases {
		rec, s1, s2, ticks, since := good()
		c.mut(&rec, &s1, &s2, &ticks)
		p := Verify(rec, s1, s2, ticks, since)
		if !strings.Contains(strings.Join(p, "; "), c.want) {
			t.Errorf("%s: problems %v, want one mentioning %q", name, p, c.want)
		}
	}
}
