// Package proc reads what ferry needs of /proc/PID/stat.
package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat returns a process's command name, parent pid and state letter ("R", "S", "Z", …);
// a process that is gone gives "", 0, "".
func Stat(pid int) (comm string, ppid int, state string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, ""
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, ""
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 2 {
		return "", 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return s[open+1 : closing], ppid, f[0]
}
