package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/transport/wire"
)

func feed(pr *progress) {
	t0 := time.Now()
	ev := func(kind, phase string) {
		pr.Event(migrate.Event{Time: time.Now(), Container: "web", Kind: kind, Phase: phase, MemoryBytes: 8 << 20, FSBytes: 1 << 20, Outcome: "committed"})
	}
	ev(migrate.EventPlan, "")
	ev(migrate.EventPhaseStart, "fs-presync")
	pr.Bytes("web", wire.StreamRsync, "rootfs", 512<<10)
	ev(migrate.EventPhaseEnd, "fs-presync")
	ev(migrate.EventPhaseStart, "dump")
	for i := 0; i < 8; i++ {
		pr.Bytes("web", wire.StreamPages, "pages", 1<<20)
	}
	ev(migrate.EventPhaseEnd, "dump")
	ev(migrate.EventDone, "")
	_ = t0
}

// Without a terminal, progress is plain lines: one per phase start and end, one per stream
// when its phase ends, the outcome; no escape sequences.
func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	pr := newProgressTo(progressPlain, &b)
	feed(pr)
	pr.Close()
	out := b.String()
	for _, want := range []string{"ferry: web: fs-presync…\n", "ferry: web: files rootfs (pre-sync) 512.0 KiB", "ferry: web: fs-presync done (",
		"ferry: web: dump…\n", "ferry: web: memory 8.0 MiB", "ferry: web: dump done (", "ferry: web: committed\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("plain progress lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, '\x1b') {
		t.Errorf("escape sequences in plain progress:\n%q", out)
	}
	if strings.Count(out, "memory 8.0 MiB") != 1 {
		t.Errorf("the memory stream's total is not printed exactly once:\n%s", out)
	}
}

// --progress json: one JSON event per line.
func TestProgressJSON(t *testing.T) {
	var b bytes.Buffer
	pr := newProgressTo(progressJSON, &b)
	feed(pr)
	kinds := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var e migrate.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not a JSON event: %q (%v)", l, err)
		}
		kinds[e.Kind]++
	}
	if kinds[migrate.EventPhaseStart] != 2 || kinds[migrate.EventPhaseEnd] != 2 || kinds[migrate.EventDone] != 1 || kinds[migrate.EventPlan] != 1 {
		t.Errorf("events: %v", kinds)
	}
}

func TestProgressModes(t *testing.T) {
	if _, err := newProgress("fancy", nil); err == nil {
		t.Error("--progress fancy accepted")
	}
}
