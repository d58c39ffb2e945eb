package lab

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/ferry-project/ferry/migrate"
)

// Plot draws the memory bench's figures into dir: downtime.svg (downtime against RSS, one
// line per method: ferry's strategies, Podman's pipeline, the raw SSH time for the same bytes)
// and timeline.svg (the phases of the largest stop-copy move, on a time axis). It returns the
// files written.
func Plot(memJSON, dir string) ([]string, error) {
	b, err := os.ReadFile(memJSON)
	if err != nil {
		return nil, err
	}
	var r BenchMemResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", memJSON, err)
	}
	var out []string
	p := filepath.Join(dir, "downtime.svg")
	if err := plotDowntime(&r, p); err != nil {
		return out, err
	}
	out = append(out, p)
	if run := timelineRun(&r); run != nil {
		p := filepath.Join(dir, "timeline.svg")
		title := fmt.Sprintf("one %s move of %d MiB (%s → %s): downtime %.2f s (red: the container is frozen)", run.Strategy, run.MemMiB, run.From, run.To, run.DowntimeMs/1000)
		if err := plotTimeline(run.Phases, title, p); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// downtimeSeries are the medians by method, each as (RSS MiB, seconds) sorted by RSS.
func downtimeSeries(r *BenchMemResult) map[string]plotter.XYs {
	series := map[string]plotter.XYs{}
	for _, s := range r.Summary {
		name := methodLabel(s.Method)
		if s.Driver == "rsync" || s.Driver == "zfs" {
			name += " + volume by " + s.Driver
		}
		series[name] = append(series[name], plotter.XY{X: float64(s.MemMiB), Y: s.DowntimeMs / 1000})
	}
	for _, xy := range series {
		sort.Slice(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
	}
	return series
}

func plotDowntime(r *BenchMemResult, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Downtime against memory in use (medians; %s CPUs, kernel %s)", r.Machine["cpus"], r.Machine["kernel"])
	p.X.Label.Text = "RSS (MiB)"
	p.Y.Label.Text = "downtime (s)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 64, Label: "64"}, {Value: 256, Label: "256"}, {Value: 1024, Label: "1024"}})
	p.Legend.Top, p.Legend.Left = true, true
	series := downtimeSeries(r)
	names := make([]string, 0, len(series))
	for n := range series {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		l, pts, err := plotter.NewLinePoints(series[n])
		if err != nil {
			return err
		}
		l.Color, pts.Color = plotutil.Color(i), plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		pts.Shape = plotutil.Shape(i)
		p.Add(l, pts)
		p.Legend.Add(n, l, pts)
	}
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// timelineRun is the run whose phases the timeline shows: the median stop-copy move at the
// largest size.
func timelineRun(r *BenchMemResult) *BenchMemRun {
	var runs []*BenchMemRun
	for i := range r.Runs {
		run := &r.Runs[i]
		if run.Strategy != migrate.StopCopy || len(run.Phases) == 0 || (run.Driver != "" && run.Driver != "rootfs") {
			continue
		}
		if len(runs) > 0 && run.MemMiB > runs[0].MemMiB {
			runs = runs[:0]
		}
		if len(runs) == 0 || run.MemMiB == runs[0].MemMiB {
			runs = append(runs, run)
		}
	}
	if len(runs) == 0 {
		return nil
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].DowntimeMs < runs[j].DowntimeMs })
	return runs[len(runs)/2]
}

func plotTimeline(phases []migrate.Phase, title, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since the start (s)"
	names := make([]string, len(phases))
	for i, ph := range phases {
		names[len(phases)-1-i] = ph.Name // first phase on top
		y := float64(len(phases) - 1 - i)
		l, err := plotter.NewLine(plotter.XYs{{X: ph.StartMs / 1000, Y: y}, {X: max(ph.EndMs, ph.StartMs+5) / 1000, Y: y}})
		if err != nil {
			return err
		}
		l.Width = vg.Points(10)
		l.Color = color.RGBA{R: 40, G: 100, B: 180, A: 255}
		if ph.Name == "freeze" || ph.Name == "dump" || ph.Name == "fs-final" || ph.Name == "images" || ph.Name == "restore" || ph.Name == "commit" {
			l.Color = color.RGBA{R: 200, G: 60, B: 40, A: 255} // within the downtime
		}
		l.LineStyle.Dashes = nil
		p.Add(l)
		lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: max(ph.EndMs, ph.StartMs+5) / 1000, Y: y}},
			Labels: []string{fmt.Sprintf(" %.0f ms", ph.EndMs-ph.StartMs)}})
		if err != nil {
			return err
		}
		for i := range lbl.TextStyle {
			lbl.TextStyle[i].YAlign = draw.YCenter
		}
		p.Add(lbl)
	}
	p.NominalY(names...)
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}
