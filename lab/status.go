package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// HostStatus is one host in `ferry-lab status`.
type HostStatus struct {
	Name       string            `json:"name"`
	Addr       string            `json:"addr"`
	Up         bool              `json:"up"`
	Containerd bool              `json:"containerd"`
	SSHD       bool              `json:"sshd"`
	Containers []ContainerStatus `json:"containers"`
	Error      string            `json:"error,omitempty"`
}

// Status reports the lab's hosts and their containers.
func Status(ctx context.Context) ([]HostStatus, error) {
	if !IsUp() {
		return nil, fmt.Errorf("the lab is down (ferry-lab up creates it)")
	}
	var out []HostStatus
	for _, h := range Hosts {
		hs := HostStatus{Name: h.Name, Addr: h.Addr.String(), Up: fileExists(h.netnsPath())}
		hs.Containerd = pidAlive(h, "containerd")
		hs.SSHD = pidAlive(h, "sshd")
		if hs.Containerd {
			b, err := Command(h, HelperPath(), HelperCmd, "list", h.Name).Output()
			if err != nil {
				hs.Error = err.Error()
			} else if err := json.Unmarshal(b, &hs.Containers); err != nil {
				hs.Error = err.Error()
			}
		}
		out = append(out, hs)
	}
	return out, nil
}

func pidAlive(h Host, name string) bool {
	b, err := os.ReadFile(h.dir() + "/" + name + ".pid")
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
