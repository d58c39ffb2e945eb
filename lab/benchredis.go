package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// BenchRedisResult is the JSON `ferry-lab bench-redis` writes: what a client of a Redis
// container sees while ferry moves it — the longest gap between two answers on its one
// connection — next to ferry's own downtime figure for the same move.
type BenchRedisResult struct {
	Date     time.Time           `json:"date"`
	Machine  map[string]string   `json:"machine"`
	Interval float64             `json:"client_interval_ms"` // the client's time between two commands
	Runs     []BenchRedisRun     `json:"runs"`
	Skipped  map[string]string   `json:"skipped"`
	Summary  []BenchRedisSummary `json:"summary"`
}

// BenchRedisRun is one move of a Redis container holding Keys keys.
type BenchRedisRun struct {
	Strategy       string  `json:"strategy"`
	Keys           int     `json:"keys"`
	From           string  `json:"from"`
	To             string  `json:"to"`
	ClientMaxGapMs float64 `json:"client_longest_gap_ms"` // client-observed downtime
	DowntimeMs     float64 `json:"downtime_ms"`           // ferry's report: freeze to resume
	TotalMs        float64 `json:"total_ms"`
	WireBytes      int64   `json:"wire_bytes"`
	ClientRequests int64   `json:"client_requests"`
	SameConnection bool    `json:"same_connection"`
	KeysVerified   int     `json:"keys_verified"`
	RedisRSSMiB    int     `json:"redis_rss_mib"`
}

// BenchRedisSummary is the median of a strategy at one key count.
type BenchRedisSummary struct {
	Strategy       string  `json:"strategy"`
	Keys           int     `json:"keys"`
	ClientMaxGapMs float64 `json:"client_longest_gap_ms"`
	DowntimeMs     float64 `json:"downtime_ms"`
}

const benchRedisInterval = 5 * time.Millisecond

// BenchRedis moves a Redis container a → b → a per strategy, for each key count, with a client
// on one connection throughout; every move is verified (every key, the same connection).
func BenchRedis(ctx context.Context, keyCounts []int, progress io.Writer) (*BenchRedisResult, error) {
	res := &BenchRedisResult{Date: time.Now().UTC(), Machine: machine(), Skipped: map[string]string{},
		Interval: float64(benchRedisInterval.Microseconds()) / 1000}
	delete(res.Machine, "zfs")
	if b, err := exec.Command("criu", "--version").Output(); err == nil {
		res.Machine["criu"] = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "Version:"))
	}
	a, b := Hosts[0], Hosts[1]
	strategies := []string{"stop-copy", "post-copy"}
	if out, err := Command(a, "criu", "check", "--feature", "mem_dirty_track").CombinedOutput(); err != nil {
		res.Skipped["pre-copy"] = "this kernel has no soft-dirty memory tracking (criu check --feature mem_dirty_track: " +
			strings.TrimSpace(lastLine(string(out))) + ")"
	} else {
		strategies = append(strategies, "pre-copy")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for _, keys := range keyCounts {
		name := fmt.Sprintf("br-%d", keys)
		if out, err := exec.CommandContext(ctx, self, "run", a.Name, name, "--net", "--redis").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("start redis: %w: %s", err, out)
		}
		runs, err := func() ([]BenchRedisRun, error) {
			addr, err := RedisAddr(name)
			if err != nil {
				return nil, err
			}
			start := time.Now()
			if err := RedisLoad(ctx, addr, keys); err != nil {
				return nil, err
			}
			fmt.Fprintf(progress, "redis %8d keys loaded in %.1f s\n", keys, time.Since(start).Seconds())
			var runs []BenchRedisRun
			at := a
			for _, s := range strategies {
				for range 2 {
					to := b
					if at.Name == b.Name {
						to = a
					}
					r, err := benchRedisMove(ctx, name, addr, keys, s, at, to)
					if err != nil {
						return runs, fmt.Errorf("%s with %d keys %s→%s: %w", s, keys, at.Name, to.Name, err)
					}
					at = to
					runs = append(runs, *r)
					fmt.Fprintf(progress, "%-9s %8d keys %s→%s: client's longest gap %6.0f ms, ferry downtime %6.0f ms, %d requests on one connection, RSS %d MiB\n",
						s, keys, r.From, r.To, r.ClientMaxGapMs, r.DowntimeMs, r.ClientRequests, r.RedisRSSMiB)
				}
			}
			return runs, nil
		}()
		res.Runs = append(res.Runs, runs...)
		_ = exec.Command(self, "rm", hostOf(ctx, name), name).Run()
		if err != nil {
			return res, err
		}
	}
	res.summarize()
	return res, nil
}

// hostOf is the lab host running name (where the switch routes its address), a by default.
func hostOf(ctx context.Context, name string) string {
	if ip, ok := ContainerIP(name); ok {
		if h := RoutedTo(ctx, ip); h != "" {
			return h
		}
	}
	return Hosts[0].Name
}

func benchRedisMove(ctx context.Context, name, addr string, keys int, strategy string, from, to Host) (*BenchRedisRun, error) {
	w, err := StartRedisWatch(ctx, addr, keys, benchRedisInterval)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // the client's steady rhythm before the move
	rep, merr := benchMigrate(ctx, from, name, to, "--strategy", strategy)
	time.Sleep(time.Second)
	wres, werr := w.Stop()
	if merr != nil {
		return nil, merr
	}
	if werr != nil {
		return nil, fmt.Errorf("the client: %w", werr)
	}
	n, err := RedisVerify(ctx, addr, keys)
	if err != nil {
		return nil, err
	}
	r := &BenchRedisRun{Strategy: strategy, Keys: keys, From: from.Name, To: to.Name, ClientMaxGapMs: wres.LongestGapMs,
		DowntimeMs: rep.DowntimeMs, TotalMs: rep.TotalMs, WireBytes: rep.WireBytes, ClientRequests: wres.Requests,
		SameConnection: wres.SameConnection, KeysVerified: n}
	if out, err := Command(to, "sh", "-c", "ps -o rss= -p $(pgrep -x redis-server | head -1)").Output(); err == nil {
		var kb int
		fmt.Sscan(strings.TrimSpace(string(out)), &kb)
		r.RedisRSSMiB = kb / 1024
	}
	return r, nil
}

func (r *BenchRedisResult) summarize() {
	type key struct {
		s string
		k int
	}
	gaps, downs := map[key][]float64{}, map[key][]float64{}
	var order []key
	for _, run := range r.Runs {
		k := key{run.Strategy, run.Keys}
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
		gaps[k] = append(gaps[k], run.ClientMaxGapMs)
		downs[k] = append(downs[k], run.DowntimeMs)
	}
	for _, k := range order {
		r.Summary = append(r.Summary, BenchRedisSummary{Strategy: k.s, Keys: k.k, ClientMaxGapMs: median(gaps[k]), DowntimeMs: median(downs[k])})
	}
}

// Markdown is the result as a table.
func (r *BenchRedisResult) Markdown() string {
	var b strings.Builder
	b.WriteString("| strategy | keys | client's longest gap (median) | ferry downtime (median) |\n|---|---|---|---|\n")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "| %s | %d | %.0f ms | %.0f ms |\n", s.Strategy, s.Keys, s.ClientMaxGapMs, s.DowntimeMs)
	}
	for k, why := range r.Skipped {
		fmt.Fprintf(&b, "\n%s skipped: %s\n", k, why)
	}
	return b.String()
}
