package lab

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// EnterCmd is the hidden ferry-lab subcommand that joins a host and execs a command there.
const EnterCmd = "__enter"

// Command returns a command that runs argv on host h, as root logged in there: inside the host's
// cgroup and namespaces, with the host's PATH and HOME=/root.
func Command(h Host, argv ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	cmd := exec.Command(self, append([]string{EnterCmd, h.Name, "--"}, argv...)...)
	cmd.Env = HostEnv()
	return cmd
}

// HostEnv is the environment of a login on a lab host.
func HostEnv() []string {
	env := []string{"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh", "PATH=" + HostPATH(), "LANG=C.UTF-8"}
	for _, k := range []string{"TERM", "FERRY_LOG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Enter joins host name's cgroup and execs argv inside its namespaces. It does not return on
// success.
func Enter(name string, argv []string) error {
	h, err := LookupHost(name)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		argv = []string{"/bin/sh", "-l"}
	}
	if _, err := os.Stat(h.nsFile("mnt")); err != nil {
		return fmt.Errorf("lab host %s is not up (run ferry-lab up): %w", name, err)
	}
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	if err := joinCgroup(hs, h.cgroup()); err != nil {
		return fmt.Errorf("lab host %s: %w", name, err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return err
	}
	args := append([]string{"nsenter",
		"--net=" + h.netnsPath(),
		"--mount=" + h.nsFile("mnt"),
		"--uts=" + h.nsFile("uts"),
		"--cgroup=" + h.nsFile("cgroup"),
		"--wd=/root", "--"}, argv...)
	env := os.Environ()
	if os.Getenv("FERRY_LAB_KEEP_ENV") == "" {
		env = HostEnv()
	}
	// nsenter looks argv[0] up in its own PATH.
	_ = os.Setenv("PATH", HostPATH())
	return syscall.Exec(nsenter, args, env)
}
