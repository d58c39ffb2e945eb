package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/ferry-project/ferry/migrate"
	"github.com/ferry-project/ferry/transport/wire"
)

// Progress modes (--progress).
const (
	progressAuto  = "auto" // bars on a terminal, plain lines otherwise
	progressBar   = "bar"
	progressPlain = "plain"
	progressJSON  = "json"
	progressNone  = "none"
)

// progress shows migrations as they run, on stderr: bars with bytes, rate and ETA on a
// terminal; plain lines (at most one per stream every plainEvery) or JSON events otherwise.
type progress struct {
	mode string
	out  io.Writer
	mu   sync.Mutex
	p    *mpb.Progress
	runs map[string]*runProgress // by container
}

type runProgress struct {
	memory, fs uint64
	preCopy    bool
	phase      string
	phaseStart map[string]time.Time
	streams    map[string]*streamProgress
	order      []string
}

type streamProgress struct {
	label       string
	bytes       int64
	total       int64
	start       time.Time
	last        time.Time // the last bytes
	lastPrinted time.Time
	printed     int64  // bytes when last printed
	phase       string // the phase it began in
	bar         *mpb.Bar
}

const (
	plainEvery = 2 * time.Second
	barEvery   = 100 * time.Millisecond
	jsonEvery  = 500 * time.Millisecond
)

func newProgress(mode string, out *os.File) (*progress, error) {
	switch mode {
	case progressAuto:
		mode = progressPlain
		// A terminal with no size (a pty nobody sized) cannot show bars.
		if w, _, err := term.GetSize(int(out.Fd())); err == nil && w > 0 {
			mode = progressBar
		}
	case progressBar, progressPlain, progressJSON, progressNone:
	default:
		return nil, fmt.Errorf("--progress must be auto, bar, plain, json or none, not %q", mode)
	}
	return newProgressTo(mode, out), nil
}

// newProgressTo shows progress in a mode already resolved (not auto).
func newProgressTo(mode string, out io.Writer) *progress {
	pr := &progress{mode: mode, out: out, runs: map[string]*runProgress{}}
	if mode == progressBar {
		pr.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return pr
}

func (pr *progress) run(container string) *runProgress {
	r := pr.runs[container]
	if r == nil {
		r = &runProgress{streams: map[string]*streamProgress{}, phaseStart: map[string]time.Time{}}
		pr.runs[container] = r
	}
	return r
}

// Event takes a migration's event (migrate.Config.Progress).
func (pr *progress) Event(e migrate.Event) {
	if pr == nil || pr.mode == progressNone {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	r := pr.run(e.Container)
	switch e.Kind {
	case migrate.EventPlan:
		r.memory, r.fs, r.preCopy = e.MemoryBytes, e.FSBytes, e.Strategy == migrate.PreCopy
	case migrate.EventPhaseStart:
		r.phase, r.phaseStart[e.Phase] = e.Phase, e.Time
	case migrate.EventPhaseEnd:
		if pr.mode == progressPlain {
			for _, name := range r.order { // the streams of the phase: their totals
				if s := r.streams[name]; s.phase == e.Phase && s.printed < s.bytes {
					pr.plainBytes(e.Container, s, e.Time, true)
				}
			}
		}
	case migrate.EventDone:
		for _, name := range r.order {
			s := r.streams[name]
			if s.bar != nil {
				s.bar.SetCurrent(s.bytes)
				s.bar.SetTotal(s.bytes, true)
			} else if pr.mode == progressPlain && s.printed < s.bytes {
				pr.plainBytes(e.Container, s, e.Time, true)
			}
		}
	}
	switch pr.mode {
	case progressJSON:
		pr.json(e)
	case progressPlain:
		switch e.Kind {
		case migrate.EventPhaseStart:
			fmt.Fprintf(pr.out, "ferry: %s: %s…\n", e.Container, e.Phase)
		case migrate.EventPhaseEnd:
			status := "done"
			if e.Error != "" {
				status = "failed"
			}
			fmt.Fprintf(pr.out, "ferry: %s: %s %s (%s)\n", e.Container, e.Phase, status, e.Time.Sub(r.phaseStart[e.Phase]).Round(time.Millisecond))
		case migrate.EventDone:
			fmt.Fprintf(pr.out, "ferry: %s: %s\n", e.Container, e.Outcome)
		}
	}
}

// Bytes takes a stream's progress (transport.Receiver.OnBytes).
func (pr *progress) Bytes(container, kind, name string, n int64) {
	if pr == nil || pr.mode == progressNone {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	r := pr.run(container)
	key := kind + "/" + name
	presync := r.phase == "fs-presync"
	if kind == wire.StreamRsync || kind == wire.StreamZFS {
		key += map[bool]string{true: " (pre-sync)", false: " (final)"}[presync]
	}
	s := r.streams[key]
	now := time.Now()
	if s == nil {
		s = &streamProgress{label: streamLabel(kind, name, presync), total: streamTotal(r, kind, name, presync), start: now, lastPrinted: now, phase: r.phase}
		r.streams[key] = s
		r.order = append(r.order, key)
		if pr.p != nil {
			// Created with an unknown total, then given the estimate: a bar built with a total
			// completes only by reaching it, and an estimate may never be reached exactly.
			s.bar = pr.p.New(0, mpb.BarStyle(),
				mpb.PrependDecorators(decor.Name(container+" "+s.label, decor.WCSyncSpaceR),
					decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)),
				mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
					decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done")))
			if s.total > 0 {
				s.bar.SetTotal(s.total, false)
			}
		}
	}
	s.bytes += n
	s.last = now
	if s.total > 0 && s.bytes > s.total {
		s.total = s.bytes + s.bytes/10 // the estimate was low: grow it, never report > 100 %
		if s.bar != nil {
			s.bar.SetTotal(s.total, false)
		}
	}
	switch {
	case s.bar != nil:
		if now.Sub(s.lastPrinted) >= barEvery {
			s.lastPrinted = now
			s.bar.SetCurrent(s.bytes)
		}
	case pr.mode == progressPlain && now.Sub(s.lastPrinted) >= plainEvery:
		pr.plainBytes(container, s, now, false)
	case pr.mode == progressJSON && now.Sub(s.lastPrinted) >= jsonEvery:
		s.lastPrinted = now
		pr.json(migrate.Event{Time: now, Container: container, Kind: migrate.EventBytes, Stream: s.label, Bytes: s.bytes})
	}
}

// plainBytes prints a stream's line: so far (with the estimate and an ETA), or its total once
// its phase ended.
func (pr *progress) plainBytes(container string, s *streamProgress, now time.Time, final bool) {
	s.lastPrinted, s.printed = now, s.bytes
	rate := 0.0
	if el := s.last.Sub(s.start).Seconds(); el > 0.01 {
		rate = float64(s.bytes) / el
	}
	line := fmt.Sprintf("ferry: %s: %s %s", container, s.label, migrate.HumanBytes(s.bytes))
	if final {
		if rate > 0 {
			line += fmt.Sprintf(" in %s (%s/s)", s.last.Sub(s.start).Round(time.Millisecond), migrate.HumanBytes(int64(rate)))
		}
		fmt.Fprintln(pr.out, line)
		return
	}
	if s.total > 0 {
		line += fmt.Sprintf(" of ~%s (%d%%)", migrate.HumanBytes(s.total), 100*s.bytes/s.total)
	}
	if rate > 0 {
		line += fmt.Sprintf(", %s/s", migrate.HumanBytes(int64(rate)))
	}
	if s.total > s.bytes && rate > 0 {
		line += fmt.Sprintf(", ETA %s", time.Duration(float64(s.total-s.bytes)/rate*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(pr.out, line)
}

func (pr *progress) json(e migrate.Event) {
	b, _ := json.Marshal(e)
	fmt.Fprintln(pr.out, string(b))
}

// Close waits for the bars to finish drawing.
func (pr *progress) Close() {
	if pr != nil && pr.p != nil {
		pr.mu.Lock()
		for _, r := range pr.runs {
			for _, s := range r.streams {
				if s.bar != nil && !s.bar.Completed() {
					s.bar.SetTotal(s.bytes, true)
				}
			}
		}
		pr.mu.Unlock()
		pr.p.Wait()
	}
}

// streamLabel names a stream for people.
func streamLabel(kind, name string, presync bool) string {
	step := map[bool]string{true: " (pre-sync)", false: " (final)"}[presync]
	switch kind {
	case wire.StreamPages:
		if strings.HasPrefix(name, "pre-") {
			return "memory round " + strings.TrimPrefix(name, "pre-")
		}
		return "memory"
	case wire.StreamLazy:
		return "memory (post-copy)"
	case wire.StreamRsync:
		return "files " + name + step
	case wire.StreamZFS:
		return "zfs " + name + step
	case wire.StreamImages:
		return "checkpoint"
	case wire.StreamBlobs:
		return "image"
	}
	return kind + " " + name
}

// streamTotal is what a stream is expected to carry (0: unknown).
// Memory: all of it in a stop-copy dump, post-copy's fill and pre-copy's first round (later
// rounds and pre-copy's final dump carry what changed: unknown). Files: the pre-sync's.
func streamTotal(r *runProgress, kind, name string, presync bool) int64 {
	switch {
	case kind == wire.StreamLazy, kind == wire.StreamPages && name == "pre-1",
		kind == wire.StreamPages && name == "pages" && !r.preCopy:
		return int64(r.memory)
	case (kind == wire.StreamRsync || kind == wire.StreamZFS) && presync:
		return int64(r.fs)
	}
	return 0
}
