package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// capSysResource is CAP_SYS_RESOURCE's bit.
const capSysResource = 24

// CredentialProblem explains why CRIU cannot dump the container of st here, or returns "". CRIU
// reads every task's resource limits with prlimit(2), which the kernel allows only for a task
// whose real, effective and saved uids and gids all equal the caller's real ones — or to a
// caller with CAP_SYS_RESOURCE. Root normally has it; a restricted root (some sandboxes, these
// test machines) does not, and then a container running as another user cannot be dumped.
func CredentialProblem(st *RuncState) string {
	if HasCapSysResource() {
		return ""
	}
	uid, gid := os.Getuid(), os.Getgid()
	for _, pid := range cgroupPids(st) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		if who := foreignIDs(string(b), uid, gid); who != "" {
			return fmt.Sprintf("its process %d runs as %s, and ferry runs without CAP_SYS_RESOURCE here: CRIU must read every task's resource limits (prlimit), which the kernel then allows only for tasks of ferry's own uid and gid (hint: run ferry as a root that has CAP_SYS_RESOURCE; in a container or sandbox, grant it)", pid, who)
		}
	}
	return ""
}

// foreignIDs returns "uid U gid G" from a /proc/PID/status text when any of its real, effective
// or saved uids differs from uid, or gids from gid; "" otherwise.
func foreignIDs(status string, uid, gid int) string {
	var uids, gids []string
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			uids = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(l, "Gid:"); ok {
			gids = strings.Fields(v)
		}
	}
	if len(uids) < 3 || len(gids) < 3 {
		return ""
	}
	for i := 0; i < 3; i++ {
		if uids[i] != strconv.Itoa(uid) || gids[i] != strconv.Itoa(gid) {
			return fmt.Sprintf("uid %s gid %s", uids[1], gids[1])
		}
	}
	return ""
}

// cgroupPids lists the container's processes from one of its cgroups.
func cgroupPids(st *RuncState) []int {
	for _, ctl := range []string{"pids", "memory", "freezer", ""} {
		dir, ok := st.CgroupPaths[ctl]
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		return pids
	}
	if st.InitProcessPid > 0 {
		return []int{st.InitProcessPid}
	}
	return nil
}

// socketsFixedIn is the first CRIU that dumps inet sockets on Linux ≥ 6.16, which answers
// EOPNOTSUPP to SO_PASSCRED/SO_PASSSEC on them (criu#2705, fixed in 4.2).
const socketsFixedIn = 40200

// InetSocketProblem explains why CRIU (version criuVersion) cannot dump the container of st on
// this kernel, or returns "": CRIU before 4.2 fails on any TCP or UDP socket on Linux ≥ 6.16.
func InetSocketProblem(st *RuncState, criuVersion int, kernel string) string {
	if criuVersion == 0 || criuVersion >= socketsFixedIn || !kernelAtLeast(kernel, 6, 16) || st.InitProcessPid <= 0 {
		return ""
	}
	n := 0
	for _, f := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", st.InitProcessPid, f))
		if err != nil {
			continue
		}
		if lines := strings.Count(strings.TrimSpace(string(b)), "\n"); lines > 0 {
			n += lines // minus the header line: Count of "\n" in trimmed text
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("its network namespace has %d TCP/UDP socket(s), and CRIU %s cannot checkpoint inet sockets on Linux %s (the kernel refuses SO_PASSCRED on them since 6.16; CRIU 4.2 handles it, criu#2705) (hint: install CRIU ≥ 4.2, or run on a kernel before 6.16)", n, FormatVersion(criuVersion), kernel)
}

// kernelAtLeast compares a kernel release ("6.18.3-foo") with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
