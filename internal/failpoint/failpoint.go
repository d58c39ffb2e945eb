//go:build failpoints

// Package failpoint injects faults into test and lab builds (go build -tags failpoints). In
// product builds every Inject is an empty function.
//
// Faults are configured per host in /etc/ferry/failpoints, one per line: NAME ACTION, where
// ACTION is kill (SIGKILL this process), exit, error, corrupt (the caller damages the data it
// is handling: see ErrCorrupt), stop (the caller SIGSTOPs the helper process it is handling: see
// ErrStop), cutlink (SIGKILL the sshd processes serving this process's
// SSH connection: the link drops, this process lives on), partition:DURATION (drop every SSH
// packet of this network namespace, silently, for DURATION), killcriu (SIGKILL the criu process of this network namespace:
// at once, waiting until it is gone, when one runs — at criu/pre-dump CRIU waits for ferry — else
// the next one within 10 s; killcriu:forked waits until it has begun to fork the restored tasks), filldisk:DIR (fill the
// filesystem of DIR with a file DIR/.failpoint-fill), or sleep:DURATION. A line is consumed
// when it fires unless it ends with "always".
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferry-project/ferry/internal/proc"
)

// Enabled reports whether this build honours failpoints.
const Enabled = true

// ErrCorrupt asks the caller to damage the data at hand (one byte) and go on.
var ErrCorrupt = errors.New("failpoint: corrupt")

// ErrStop asks the caller to stop (SIGSTOP) the process at hand and go on: a helper that hangs.
var ErrStop = errors.New("failpoint: stop")

// File holds the configured faults.
var File = "/etc/ferry/failpoints"

var mu sync.Mutex

// Inject fires the fault configured for name, if any.
func Inject(name string) error {
	mu.Lock()
	defer mu.Unlock()
	b, err := os.ReadFile(File)
	if err != nil {
		return nil
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != name {
			continue
		}
		if len(f) < 3 || f[2] != "always" {
			lines = append(lines[:i], lines[i+1:]...)
			_ = os.WriteFile(File, []byte(strings.Join(lines, "\n")), 0o644)
		}
		fmt.Fprintf(os.Stderr, "failpoint %s: %s\n", name, f[1])
		switch act := f[1]; {
		case act == "kill":
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		case act == "exit":
			os.Exit(3)
		case act == "error":
			return errors.New("failpoint " + name)
		case act == "corrupt":
			return ErrCorrupt
		case act == "stop":
			return ErrStop
		case act == "cutlink":
			cutLink()
		case strings.HasPrefix(act, "partition:"):
			d, _ := time.ParseDuration(strings.TrimPrefix(act, "partition:"))
			partition(d)
		case act == "killcriu":
			if !killCRIUNow() {
				go killCRIUSoon(10*time.Second, false)
			}
		case act == "killcriu:forked":
			go killCRIUSoon(10*time.Second, true)
		case strings.HasPrefix(act, "filldisk:"):
			fillDisk(strings.TrimPrefix(act, "filldisk:"))
		case strings.HasPrefix(act, "sleep:"):
			d, _ := time.ParseDuration(strings.TrimPrefix(act, "sleep:"))
			time.Sleep(d)
		}
		return nil
	}
	return nil
}

// cutLink drops the SSH connection this process was started over by SIGKILLing its sshd
// ancestors below the listening daemon (the per-connection monitor and session processes).
// The kernel closes the TCP connection; this process keeps running and sees its stdin end.
func cutLink() {
	var chain []int
	for pid := os.Getppid(); pid > 1; {
		comm, ppid, _ := proc.Stat(pid)
		if comm == "sshd" {
			chain = append(chain, pid)
		}
		pid = ppid
	}
	if len(chain) < 2 {
		fmt.Fprintf(os.Stderr, "failpoint: cutlink: not under an sshd session (ancestors %v)\n", chain)
		return
	}
	for _, pid := range chain[:len(chain)-1] { // the last one is the listener
		fmt.Fprintf(os.Stderr, "failpoint: SIGKILL sshd (pid %d)\n", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// partition drops SSH traffic (TCP port 22, both ways) in this network namespace for d, with an
// nftables table that a detached process deletes afterwards: nothing is closed, packets just
// stop, as when a link dies on the way.
func partition(d time.Duration) {
	const table = "ferry_failpoint"
	rules := "table inet " + table + " {\n" +
		"  chain in { type filter hook input priority 0; tcp dport 22 drop; tcp sport 22 drop; }\n" +
		"  chain out { type filter hook output priority 0; tcp sport 22 drop; tcp dport 22 drop; }\n}\n"
	add := exec.Command("nft", "-f", "-")
	add.Stdin = strings.NewReader(rules)
	if out, err := add.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: partition: nft: %v: %s\n", err, out)
		return
	}
	heal := exec.Command("sh", "-c", fmt.Sprintf("sleep %.1f; nft delete table inet %s", d.Seconds(), table))
	heal.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this process, holds no pipe of it
	if err := heal.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: partition: cannot schedule the heal: %v\n", err)
		_ = exec.Command("nft", "delete", "table", "inet", table).Run()
		return
	}
	_ = heal.Process.Release()
	fmt.Fprintf(os.Stderr, "failpoint: SSH partitioned for %s\n", d)
}

// killCRIUNow SIGKILLs a criu process running in this network namespace, if there is one, and
// waits until it is gone (its parent has reaped it or sees it dead). It reports whether it found one.
func killCRIUNow() bool {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return false
	}
	pid := findCRIU(self)
	if pid == 0 {
		return false
	}
	fmt.Fprintf(os.Stderr, "failpoint: SIGKILL criu (pid %d)\n", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || zombie(st) {
			break
		}
	}
	return true
}

// zombie reports whether a /proc/PID/stat says the process has exited.
func zombie(stat []byte) bool {
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}

// findCRIU returns the pid of a criu process in the network namespace netns, or 0.
func findCRIU(netns string) int {
	dirs, _ := os.ReadDir("/proc")
	for _, e := range dirs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isCRIU(pid) {
			continue
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns == netns {
			return pid
		}
	}
	return 0
}

// killCRIUSoon SIGKILLs the first criu process that appears in this process's network
// namespace (a lab host) within d, at once: before a dump has seized its tasks (a criu killed
// while its parasite code runs inside a task takes the task with it — CRIU's limit, not a case
// a rollback can repair). With forked, it waits until the criu has begun to build the restored
// tasks: a sibling process (criu forks the restored root with CLONE_PARENT) exists beside it.
func killCRIUSoon(d time.Duration, forked bool) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return
	}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		dirs, _ := os.ReadDir("/proc")
		for _, e := range dirs {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if !isCRIU(pid) {
				continue
			}
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns != self {
				continue
			}
			if forked { // its command line changes as it works: follow this pid
				for hasSibling(pid) == 0 && time.Now().Before(deadline) {
					time.Sleep(2 * time.Millisecond)
				}
				if hasSibling(pid) != 1 { // gone: runc asks one criu its version first
					continue
				}
			}
			fmt.Fprintf(os.Stderr, "failpoint: SIGKILL criu (pid %d)\n", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
}

// hasSibling reports whether another process has the same parent as pid: 1 yes, 0 no, -1
// pid is gone.
func hasSibling(pid int) int {
	_, parent, _ := proc.Stat(pid)
	if parent == 0 {
		return -1
	}
	dirs, _ := os.ReadDir("/proc")
	for _, e := range dirs {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if _, pp, _ := proc.Stat(p); pp == parent {
			return 1
		}
	}
	return 0
}

// isCRIU: criu itself, or started through a loader (ld.so ... /usr/sbin/criu), as ferry's
// deps install it, also once it has renamed itself to serve an RPC request.
func isCRIU(pid int) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return criuArgs(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"))
}

// fillDisk fills the filesystem holding dir, so that the next write there fails with ENOSPC.
func fillDisk(dir string) {
	f, err := os.OpenFile(filepath.Join(dir, ".failpoint-fill"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: filldisk %s: %v\n", dir, err)
		return
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			fmt.Fprintf(os.Stderr, "failpoint: filled %s with %d bytes (%v)\n", dir, n, err)
			return
		}
	}
}
