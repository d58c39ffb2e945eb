package lab

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Container networking in the lab, as a CNI bridge plugin sets it up on a real host: each lab
// host has a bridge, ContainerBridge, holding the containers' gateway address (the same on
// every host, so that a container that moves keeps its default route); a container run with
// --net gets its own network namespace (/run/netns/ferry-NAME, private to its host) with eth0
// on that bridge and an address of ContainerNet. The switch routes each container's /32 to the
// host it runs on, so a client on the switch reaches it by its address wherever it is.
const ContainerBridge = "ferry0"

// SessionPort is where a networked workload serves TCP sessions (ferry-workload --listen).
const SessionPort = 7070

var (
	ContainerGW  = netip.MustParseAddr("198.19.0.1")
	ContainerNet = netip.MustParsePrefix("198.19.0.0/24")
)

// SwitchNetnsFile is a bind of the switch's network namespace that the hosts can see.
func SwitchNetnsFile() string { return filepath.Join(StateDir, "switch-netns") }

// ContainerNetns is the name of a lab container's network namespace on its host.
func ContainerNetns(name string) string { return "ferry-" + name }

// ContainerNetnsPath is where its host keeps it.
func ContainerNetnsPath(name string) string { return "/run/netns/" + ContainerNetns(name) }

// ContainerMAC is the MAC address the lab gives the container holding ip.
func ContainerMAC(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:fe:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// hostVeth names the host side of a container's veth (at most 15 bytes).
func hostVeth(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("vf%08x", h.Sum32())
}

// hostNetSteps sets up a host's container bridge and lets the host route for its containers.
func hostNetSteps(h Host) [][]string {
	return [][]string{
		{"ip", "-n", h.netns(), "link", "add", ContainerBridge, "type", "bridge"},
		{"ip", "-n", h.netns(), "addr", "add", fmt.Sprintf("%s/%d", ContainerGW, ContainerNet.Bits()), "dev", ContainerBridge},
		{"ip", "-n", h.netns(), "link", "set", ContainerBridge, "up"},
		{"ip", "netns", "exec", h.netns(), "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
}

// setupContainerNet creates a container's network namespace on this host (run inside it) with
// eth0 on the bridge at ip, and returns the namespace's path.
func setupContainerNet(ctx context.Context, name string, ip netip.Addr) (string, error) {
	if !ContainerNet.Contains(ip) || ip == ContainerGW {
		return "", fmt.Errorf("container address %s is not in %s", ip, ContainerNet)
	}
	ns, veth := ContainerNetns(name), hostVeth(name)
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", veth, "master", ContainerBridge, "up"},
		{"ip", "-n", ns, "link", "set", "eth0", "address", ContainerMAC(ip)},
		{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s/%d", ip, ContainerNet.Bits()), "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", ContainerGW.String()},
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			_ = teardownContainerNet(ctx, name)
			return "", err
		}
	}
	return ContainerNetnsPath(name), nil
}

// teardownContainerNet removes a container's network namespace on this host (its veth goes
// with it); a missing one is not an error.
func teardownContainerNet(ctx context.Context, name string) error {
	if _, err := os.Stat(ContainerNetnsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return run(ctx, "ip", "netns", "del", ContainerNetns(name))
}

// netRecord is where the lab remembers a networked container's address (outside the hosts).
func netRecord(name string) string { return filepath.Join(StateDir, "net", name) }

// AllocateContainerIP gives name the next free address of ContainerNet, lab-wide.
func AllocateContainerIP(name string) (netip.Addr, error) {
	dir := filepath.Dir(netRecord(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return netip.Addr{}, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return netip.Addr{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return netip.Addr{}, err
	}
	if _, err := os.Stat(netRecord(name)); err == nil {
		return netip.Addr{}, fmt.Errorf("the lab already has a networked container %q (ferry-lab rm it first)", name)
	}
	used := map[netip.Addr]bool{ContainerGW: true}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil {
				used[a] = true
			}
		}
	}
	for a := ContainerGW.Next(); ContainerNet.Contains(a); a = a.Next() {
		if a.As4()[3] == 255 || used[a] {
			continue
		}
		return a, os.WriteFile(netRecord(name), []byte(a.String()+"\n"), 0o644)
	}
	return netip.Addr{}, fmt.Errorf("no free address left in %s", ContainerNet)
}

// ContainerIP returns the address the lab gave name, if it has one.
func ContainerIP(name string) (netip.Addr, bool) {
	b, err := os.ReadFile(netRecord(name))
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	return a, err == nil
}

// RouteContainer points the switch's route for ip at host: clients follow the container.
func RouteContainer(ctx context.Context, ip netip.Addr, h Host) error {
	return run(ctx, "ip", "-n", switchNS, "route", "replace", ip.String()+"/32", "via", h.Addr.String())
}

// RoutedTo returns the host the switch sends ip's traffic to ("" if none).
func RoutedTo(ctx context.Context, ip netip.Addr) string {
	out, err := exec.CommandContext(ctx, "ip", "-n", switchNS, "route", "show", ip.String()+"/32").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			for _, h := range Hosts {
				if h.Addr.String() == f[i+1] {
					return h.Name
				}
			}
		}
	}
	return ""
}

// ReleaseContainerIP forgets name's address and its switch route, if the route still points
// at host (the container may have moved away: then its new host keeps both).
func ReleaseContainerIP(ctx context.Context, name string, h Host) error {
	ip, ok := ContainerIP(name)
	if !ok {
		return nil
	}
	if to := RoutedTo(ctx, ip); to != "" && to != h.Name {
		return nil
	}
	_ = run(ctx, "ip", "-n", switchNS, "route", "del", ip.String()+"/32")
	return os.Remove(netRecord(name))
}
