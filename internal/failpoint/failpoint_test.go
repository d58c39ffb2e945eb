package failpoint

import "testing"

func TestCRIUArgs(t *testing.T) {
	loader := []string{"/opt/ferry/criu/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "--library-path", "/opt/ferry/criu/usr/lib/x86_64-linux-gnu"}
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"criu", "swrk", "3"}, true},
		{append(loader, "/opt/ferry/criu/usr/sbin/criu", "swrk", "3"), true},
		{append(loader, "criu: dump --rpc -t 24767    ."), true},          // renamed while it dumps
		{[]string{"/bin/sh", "/usr/local/sbin/criu", "swrk", "3"}, false}, // the wrapper: it execs the loader
		{[]string{"runc", "restore"}, false},
	} {
		if got := criuArgs(c.args); got != c.want {
			t.Errorf("criuArgs(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}
