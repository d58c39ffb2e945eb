package checkpoint

import "testing"

func TestForeignIDs(t *testing.T) {
	status := func(u, g string) string {
		return "Name:\tferry-workload\nUid:\t" + u + "\nGid:\t" + g + "\nGroups:\t\n"
	}
	for _, tc := range []struct {
		status string
		want   string
	}{
		{status("0\t0\t0\t0", "0\t0\t0\t0"), ""},
		{status("1000\t1000\t1000\t1000", "1001\t1001\t1001\t1001"), "uid 1000 gid 1001"},
		{status("0\t0\t0\t0", "0\t5\t0\t0"), "uid 0 gid 5"},  // effective gid
		{status("0\t0\t33\t0", "0\t0\t0\t0"), "uid 0 gid 0"}, // saved uid (the kernel checks it too)
		{status("0\t0\t0\t1000", "0\t0\t0\t0"), ""},          // fs uid: not checked by prlimit
		{"Name:\tx\n", ""}, // unreadable: no claim
	} {
		if got := foreignIDs(tc.status, 0, 0); got != tc.want {
			t.Errorf("foreignIDs(%q) = %q, want %q", tc.status, got, tc.want)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{{"6.18.3-ferry", true}, {"6.16.0", true}, {"6.15.9", false}, {"6.1.0-28-amd64", false}, {"7.0", true}, {"5.19", false}, {"junk", false}} {
		if got := kernelAtLeast(tc.release, 6, 16); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 6, 16) = %v", tc.release, got)
		}
	}
}
