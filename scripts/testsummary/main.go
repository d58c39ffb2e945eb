// Command testsummary reads `go test -json` on stdin, prints the tests' output as it comes, and
// ends with every skipped test and its reason, then "N passed, N failed, N skipped". It exits
// non-zero if a test or a build failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	var passed, failed, skipped int
	var failures []string
	out := map[string][]string{} // test → its output lines
	skips := map[string]string{}
	failedPkgs := map[string]bool{}
	buildFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Println(string(line)) // not JSON: a build error or a tool's output
			continue
		}
		key := e.Package + "." + e.Test
		switch e.Action {
		case "output", "build-output":
			fmt.Print(e.Output)
			if e.Test != "" {
				out[key] = append(out[key], e.Output)
			}
		case "build-fail":
			buildFailed = true
		case "pass":
			if e.Test != "" {
				passed++
			}
		case "fail":
			if e.Test != "" {
				failed++
				failures = append(failures, key)
				failedPkgs[e.Package] = true
			} else if !failedPkgs[e.Package] {
				// The package failed without a failing test: build error or TestMain exit.
				failed++
				failures = append(failures, e.Package+" (package: build or TestMain failed)")
			}
		case "skip":
			if e.Test != "" {
				skipped++
				skips[key] = reason(out[key])
			}
		}
	}
	fmt.Println()
	if len(skips) > 0 {
		fmt.Println("Skipped, and why:")
		keys := make([]string, 0, len(skips))
		for k := range skips {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("  %s: %s\n", strings.TrimPrefix(k, "github.com/ferry-project/ferry/"), skips[k])
		}
	} else {
		fmt.Println("Skipped: none.")
	}
	if len(failures) > 0 {
		fmt.Println("Failed:")
		for _, f := range failures {
			fmt.Printf("  %s\n", strings.TrimPrefix(f, "github.com/ferry-project/ferry/"))
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || buildFailed {
		os.Exit(1)
	}
}

// reason extracts the t.Skip message from a test's output: the last logged message (with its
// continuation lines), not the test's earlier logs.
func reason(lines []string) string {
	var r []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// "file_test.go:12: message" → message; it starts a new message.
		if i := strings.Index(t, ".go:"); i > 0 {
			if j := strings.Index(t[i+4:], ": "); j >= 0 {
				t = t[i+4+j+2:]
				r = r[:0]
			}
		}
		r = append(r, t)
	}
	if len(r) == 0 {
		return "(no reason given)"
	}
	return strings.Join(r, " ")
}
