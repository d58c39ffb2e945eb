package failpoint

import "strings"

// criuArgs reports whether a command line is criu's: criu itself, started through a loader
// (ld.so --library-path DIR /opt/ferry/criu/usr/sbin/criu …, as ferry's deps install it, not the
// shell wrapper that execs it), or renamed by CRIU while it serves an RPC request.
func criuArgs(args []string) bool {
	for i, a := range args {
		if i > 3 {
			break
		}
		// "criu: dump --rpc -t PID": CRIU's title for itself while it serves an RPC request.
		if a == "criu" || strings.HasPrefix(a, "criu: ") || strings.HasSuffix(a, "/usr/sbin/criu") || strings.HasSuffix(a, "/bin/criu") && !strings.HasSuffix(a, "/local/sbin/criu") {
			return true
		}
	}
	return false
}
