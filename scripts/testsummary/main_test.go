package main

import "testing"

func TestReason(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"=== RUN   TestX\n", "    x_test.go:10: needs root\n", "--- SKIP: TestX (0.00s)\n"}, "needs root"},
		{[]string{"    x_test.go:10: ferry-lab run a → exit 0\n", "    x_test.go:12: no soft-dirty:\n", "        criu says so\n", "--- SKIP: TestX\n"}, "no soft-dirty: criu says so"},
		{[]string{"--- SKIP: TestX\n"}, "(no reason given)"},
	} {
		if got := reason(tc.lines); got != tc.want {
			t.Errorf("reason(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}
