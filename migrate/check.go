package migrate

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/transport/wire"
)

// CheckInput is what `ferry check` found out, on both hosts and about the link between them.
type CheckInput struct {
	Source      wire.HostFacts
	SourceZFS   string // why this host has no usable ZFS ("" if it has)
	Facts       wire.FactsReply
	LinkBps     float64 // best of the link probes (0: not measured)
	LinkErr     string
	MaxDowntime time.Duration
	Container   *Report // the preflight of one container (CheckOnly), if one was named
}

// CheckReport is `ferry check`'s answer: what both sides support, what auto would do, and
// whether a migration between them can run.
type CheckReport struct {
	Source        wire.HostFacts `json:"source"`
	Target        wire.HostFacts `json:"target"`
	SourceZFS     string         `json:"source_zfs"` // "ok" or why not
	TargetZFS     string         `json:"target_zfs"` // the parent dataset, or why not
	CPU           string         `json:"cpu"`        // "compatible" or the problem
	LinkMBps      float64        `json:"link_mbps"`  // measured, MB/s (0: not measured)
	Strategies    []StrategyCan  `json:"strategies"`
	Auto          AutoRule       `json:"auto"`
	Container     *Report        `json:"container,omitempty"`
	Problems      []string       `json:"problems"`
	OK            bool           `json:"ok"`
	MaxDowntimeMs float64        `json:"max_downtime_ms"`
}

// StrategyCan says whether a strategy can run between the two hosts.
type StrategyCan struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Why       string `json:"why,omitempty"`
}

// AutoRule is what auto chooses, by the memory a container uses.
type AutoRule struct {
	StopCopyUpToBytes uint64 `json:"stop_copy_up_to_bytes"` // 0: the link was not measured
	Above             string `json:"above"`                 // the strategy beyond that
	AboveReason       string `json:"above_reason"`
}

// StopCopyLimit is the most memory stop-copy moves within maxDowntime over a link (bytes).
func StopCopyLimit(maxDowntime time.Duration, linkBps float64) uint64 {
	if linkBps <= 0 || maxDowntime <= fixedDowntime {
		return 0
	}
	return uint64((maxDowntime - fixedDowntime).Seconds() * linkBps * pipelineFactor)
}

// Check composes the report (pure).
func Check(in CheckInput) CheckReport {
	if in.MaxDowntime <= 0 {
		in.MaxDowntime = DefaultMaxDowntime
	}
	t := in.Facts.Target
	r := CheckReport{Source: in.Source, Target: t, LinkMBps: in.LinkBps / 1e6, MaxDowntimeMs: ms(in.MaxDowntime), Container: in.Container}
	r.Source.CPUInfo, r.Target.CPUInfo = nil, nil
	r.SourceZFS = "ok"
	if in.SourceZFS != "" {
		r.SourceZFS = in.SourceZFS
	}
	r.TargetZFS = in.Facts.ZFSParent
	if in.Facts.ZFS != "" {
		r.TargetZFS = in.Facts.ZFS
	}
	r.CPU = "compatible"
	if in.Facts.CPU != nil {
		r.CPU = in.Facts.CPU.Message
		r.Problems = append(r.Problems, in.Facts.CPU.Message+hint(in.Facts.CPU.Hint))
	}
	for _, p := range SourceProblems(in.Source) {
		r.Problems = append(r.Problems, p.Message+hint(p.Hint))
	}
	for _, p := range in.Facts.Problems {
		r.Problems = append(r.Problems, p.Message+hint(p.Hint))
	}
	if in.LinkErr != "" {
		r.Problems = append(r.Problems, "the link probe failed: "+in.LinkErr)
	}
	si := StrategyInput{Requested: Auto, MaxDowntime: in.MaxDowntime, Source: in.Source, Target: t, LinkBps: in.LinkBps}
	r.Strategies = []StrategyCan{{Name: StopCopy, Available: true}, {Name: PreCopy}, {Name: PostCopy}}
	r.Strategies[1].Why = preCopyWhy(si)
	r.Strategies[2].Why = postCopyWhy(si)
	for i := range r.Strategies {
		r.Strategies[i].Available = r.Strategies[i].Why == ""
	}
	r.Auto.StopCopyUpToBytes = StopCopyLimit(in.MaxDowntime, in.LinkBps)
	si.MemoryBytes = r.Auto.StopCopyUpToBytes + 1<<20
	if c, err := Choose(si); err == nil {
		r.Auto.Above, r.Auto.AboveReason = c.Strategy, c.Reason
	}
	if in.Container != nil && in.Container.Outcome != OutcomeChecked {
		if len(in.Container.Problems) > 0 {
			r.Problems = append(r.Problems, in.Container.Problems...)
		} else if in.Container.Error != "" {
			r.Problems = append(r.Problems, in.Container.Error)
		}
	}
	r.Problems = dedupe(r.Problems)
	r.OK = len(r.Problems) == 0
	return r
}

func dedupe(xs []string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// JSON is the report as indented JSON.
func (r CheckReport) JSON() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// Text is the report as a table for a terminal.
func (r CheckReport) Text() string {
	var b strings.Builder
	src, dst := r.Source.Host, r.Target.Host
	fmt.Fprintf(&b, "ferry check: %s → %s\n\n", src, dst)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(name, a, t string) { fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, a, t) }
	row("", src+" (source)", dst+" (target)")
	row("kernel", r.Source.Kernel, r.Target.Kernel)
	row("CRIU", criuVersion(r.Source), criuVersion(r.Target))
	row("criu check", okOr(r.Source.CRIUCheck), okOr(r.Target.CRIUCheck))
	row("containerd", orNone(r.Source.ContainerdVer), orNone(r.Target.ContainerdVer))
	row("rsync", orNone(r.Source.Rsync), orNone(r.Target.Rsync))
	row("soft-dirty (pre-copy)", yesNo(r.Source.SoftDirty), yesNo(r.Target.SoftDirty))
	row("userfaultfd (post-copy)", yesNo(r.Source.Userfaultfd), yesNo(r.Target.Userfaultfd))
	row("lazy dump (post-copy)", okOr(r.Source.LazyDump), "-")
	zfsCell := func(s string, ok bool) string {
		if ok {
			return s
		}
		return "no: " + ShortMessage(s)
	}
	row("ZFS", zfsCell(r.SourceZFS, r.SourceZFS == "ok"), zfsCell(r.TargetZFS, r.TargetZFS != "" && !strings.Contains(r.TargetZFS, " ")))
	row("free space", HumanBytes(int64(r.Source.FreeBytes)), HumanBytes(int64(r.Target.FreeBytes)))
	row("CPU", "-", r.CPU)
	link := "not measured"
	if r.LinkMBps > 0 {
		link = fmt.Sprintf("%.0f MB/s %s → %s (best of 3 probes)", r.LinkMBps, src, dst)
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "\nlink: %s\n", link)
	b.WriteString("\nstrategies\n")
	for _, s := range r.Strategies {
		if s.Available {
			fmt.Fprintf(&b, "  %-10s yes\n", s.Name)
		} else {
			fmt.Fprintf(&b, "  %-10s no: %s\n", s.Name, s.Why)
		}
	}
	maxDown := time.Duration(r.MaxDowntimeMs * float64(time.Millisecond))
	if r.Auto.StopCopyUpToBytes > 0 {
		fmt.Fprintf(&b, "auto (max downtime %s): stop-copy up to %s of memory in use; above that %s\n",
			maxDown, HumanBytes(int64(r.Auto.StopCopyUpToBytes)), r.Auto.Above)
	} else {
		fmt.Fprintf(&b, "auto (max downtime %s): %s (the link was not measured)\n", maxDown, r.Auto.Above)
	}
	if c := r.Container; c != nil {
		fmt.Fprintf(&b, "\ncontainer %s\n", c.Container)
		if c.Outcome == OutcomeChecked {
			fmt.Fprintf(&b, "  strategy    %s\n", c.StrategyReason)
			var plan []string
			for _, m := range c.FSPlan {
				plan = append(plan, m.Name+" "+m.Driver)
			}
			fmt.Fprintf(&b, "  filesystem  %s\n", strings.Join(plan, ", "))
			if len(c.Addresses) > 0 {
				fmt.Fprintf(&b, "  addresses   %s (its network moves with it)\n", strings.Join(c.Addresses, ", "))
			}
		}
	}
	if r.OK {
		what := "a migration"
		if r.Container != nil {
			what = "migrating " + r.Container.Container
		}
		fmt.Fprintf(&b, "\nOK: %s from %s to %s can run\n", what, src, dst)
	} else {
		fmt.Fprintf(&b, "\nNOT OK: a migration from %s to %s would be refused:\n", src, dst)
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	return b.String()
}

func criuVersion(f wire.HostFacts) string {
	if f.CRIUVersion == 0 {
		return "none"
	}
	return checkpoint.FormatVersion(f.CRIUVersion)
}

func okOr(why string) string {
	if why == "" {
		return "ok"
	}
	return "no: " + why
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ShortMessage is the gist of a message for a table cell: its first line, up to its first colon when
// longer than 40 characters, at most 40 characters (the JSON has it whole).
func ShortMessage(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len([]rune(s)) > 40 {
		if head, _, ok := strings.Cut(s, ": "); ok {
			s = head
		}
	}
	if r := []rune(s); len(r) > 40 {
		return string(r[:39]) + "…"
	}
	return s
}
