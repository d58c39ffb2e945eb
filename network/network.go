// Package network moves a container's network attachment: the network namespace a CNI-style
// setup made for it (a veth on a host bridge, addresses, routes). The source reads it; the
// target recreates it — same namespace path, same interface names, MAC and addresses, host
// side on a bridge of the same name — before CRIU restores the container into it, so the
// container keeps its address (and, with tcp-established, its connections).
//
// It drives iproute2 (`ip -j`), as CNI plugins' users do when debugging, rather than netlink
// directly: the commands are the documentation of what it does.
package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// NetnsDir is where named network namespaces live (ip netns); ferry recreates only those.
const NetnsDir = "/run/netns"

// Named says whether path is a named network namespace (NetnsDir/NAME): one ferry can
// recreate on the target.
func Named(path string) bool {
	return filepath.Dir(path) == NetnsDir && wire.ValidName(filepath.Base(path))
}

type ipLink struct {
	IfIndex   int    `json:"ifindex"`
	LinkIndex int    `json:"link_index"`
	Name      string `json:"ifname"`
	MTU       int    `json:"mtu"`
	Address   string `json:"address"`
	LinkType  string `json:"link_type"`
	Master    string `json:"master"`
	AddrInfo  []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
		Scope     string `json:"scope"`
	} `json:"addr_info"`
}

type ipRoute struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
}

// command is argv run in the network namespace netns ("" for this one's).
func command(ctx context.Context, netns string, argv ...string) *exec.Cmd {
	if netns == "" {
		return exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netns, "--"}, argv...)...)
}

// inNetns runs argv in the network namespace netns, with stdin; the error carries its output.
func inNetns(ctx context.Context, netns, stdin string, argv ...string) (string, error) {
	cmd := command(ctx, netns, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), netns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ipJSON runs `ip -j ARGS` (in netns when it is not "") and decodes its output into v.
func ipJSON(ctx context.Context, netns string, v any, args ...string) error {
	argv := append([]string{"-j"}, args...)
	cmd := command(ctx, netns, append([]string{"ip"}, argv...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil
	}
	return json.Unmarshal(out, v)
}

// Read describes the network namespace at path: its veth interfaces (with the bridge their
// host side is on) and its routes. It is run in the host's network namespace.
func Read(ctx context.Context, path string) (*wire.NetAttachment, error) {
	if !Named(path) {
		return nil, fmt.Errorf("network namespace %s is not a named one (%s/NAME): ferry recreates only those: %w", path, NetnsDir, errdefs.ErrUnsupported)
	}
	var links, hostLinks []ipLink
	if err := ipJSON(ctx, path, &links, "addr", "show"); err != nil {
		return nil, err
	}
	if err := ipJSON(ctx, "", &hostLinks, "link", "show"); err != nil {
		return nil, err
	}
	a := &wire.NetAttachment{Netns: path}
	for _, l := range links {
		if l.LinkType == "loopback" {
			continue
		}
		if l.LinkType != "ether" || l.LinkIndex == 0 {
			return nil, fmt.Errorf("interface %s in %s is not a veth to this host (%s): ferry moves veth attachments only: %w", l.Name, path, l.LinkType, errdefs.ErrUnsupported)
		}
		iface := wire.NetInterface{Name: l.Name, MAC: l.Address, MTU: l.MTU}
		for _, h := range hostLinks {
			if h.IfIndex == l.LinkIndex {
				iface.Bridge = h.Master
			}
		}
		if iface.Bridge == "" {
			return nil, fmt.Errorf("the host side of %s in %s is on no bridge: ferry moves bridge attachments only: %w", l.Name, path, errdefs.ErrUnsupported)
		}
		for _, ai := range l.AddrInfo {
			if ai.Scope == "link" { // fe80::: the kernel makes it again
				continue
			}
			iface.Addrs = append(iface.Addrs, fmt.Sprintf("%s/%d", ai.Local, ai.PrefixLen))
		}
		a.Interfaces = append(a.Interfaces, iface)
	}
	var routes []ipRoute
	if err := ipJSON(ctx, path, &routes, "route", "show"); err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.Protocol == "kernel" { // made with the address
			continue
		}
		a.Routes = append(a.Routes, wire.NetRoute{Dst: r.Dst, Gateway: r.Gateway, Dev: r.Dev})
	}
	return a, nil
}

// Addresses lists the attachment's addresses (without prefix length).
func Addresses(a *wire.NetAttachment) []string {
	var out []string
	for _, i := range a.Interfaces {
		for _, p := range i.Addrs {
			if pf, err := netip.ParsePrefix(p); err == nil {
				out = append(out, pf.Addr().String())
			}
		}
	}
	return out
}

// Validate checks an attachment from the other side before anything is made from it: names,
// MACs, addresses and routes must be what they claim, the namespace a named one.
func Validate(a *wire.NetAttachment) error {
	bad := func(f string, args ...any) error {
		return fmt.Errorf("network attachment: "+f+": %w", append(args, errdefs.ErrInvalid)...)
	}
	if !Named(a.Netns) {
		return bad("namespace path %q is not %s/NAME", a.Netns, NetnsDir)
	}
	if len(a.Interfaces) == 0 {
		return bad("no interface")
	}
	for _, i := range a.Interfaces {
		if !wire.ValidName(i.Name) || len(i.Name) > 15 || !wire.ValidName(i.Bridge) || len(i.Bridge) > 15 {
			return bad("interface %q on bridge %q: not a valid interface name", i.Name, i.Bridge)
		}
		if hw, err := net.ParseMAC(i.MAC); err != nil || len(hw) != 6 {
			return bad("interface %s: MAC %q", i.Name, i.MAC)
		}
		if i.MTU < 68 || i.MTU > 65535 {
			return bad("interface %s: MTU %d", i.Name, i.MTU)
		}
		for _, ad := range i.Addrs {
			if _, err := netip.ParsePrefix(ad); err != nil {
				return bad("interface %s: address %q", i.Name, ad)
			}
		}
	}
	for _, r := range a.Routes {
		if r.Dst != "default" {
			if _, err := netip.ParsePrefix(r.Dst); err != nil {
				if _, err := netip.ParseAddr(r.Dst); err != nil {
					return bad("route destination %q", r.Dst)
				}
			}
		}
		if r.Gateway != "" {
			if _, err := netip.ParseAddr(r.Gateway); err != nil {
				return bad("route gateway %q", r.Gateway)
			}
		}
		if r.Dev != "" && !wire.ValidName(r.Dev) {
			return bad("route device %q", r.Dev)
		}
	}
	return nil
}

// Problems lists why this host cannot take the attachment: its namespace name taken, a bridge
// missing, an address already in use here (in this host's namespace or any named one).
func Problems(ctx context.Context, a *wire.NetAttachment, host string) []wire.Problem {
	var p []wire.Problem
	if err := Validate(a); err != nil {
		return []wire.Problem{{Code: "invalid", Message: err.Error()}}
	}
	if _, err := os.Stat(a.Netns); err == nil {
		p = append(p, wire.Problem{Code: "conflict", Message: fmt.Sprintf("%s already has a network namespace %s", host, a.Netns),
			Hint: "remove it there (ip netns del " + filepath.Base(a.Netns) + ") if nothing uses it"})
	}
	if _, err := exec.LookPath("nft"); err != nil {
		p = append(p, wire.Problem{Code: "unsupported", Message: host + " has no nft: ferry locks the container's network with nftables between the freeze and the commit",
			Hint: "install nftables on " + host})
	}
	var hostLinks []ipLink
	if err := ipJSON(ctx, "", &hostLinks, "addr", "show"); err != nil {
		return append(p, wire.Problem{Code: "unsupported", Message: err.Error(), Hint: "install iproute2 on " + host})
	}
	bridges := map[string]bool{}
	for _, l := range hostLinks {
		bridges[l.Name] = true
	}
	for _, i := range a.Interfaces {
		if !bridges[i.Bridge] {
			p = append(p, wire.Problem{Code: "precondition", Message: fmt.Sprintf("%s has no bridge %q for the container's %s", host, i.Bridge, i.Name),
				Hint: "create it there as on the source (same name, same network)"})
		}
	}
	inUse := map[string]string{} // address → where
	note := func(where string, links []ipLink) {
		for _, l := range links {
			for _, ai := range l.AddrInfo {
				inUse[ai.Local] = where
			}
		}
	}
	note("the host itself", hostLinks)
	ents, _ := os.ReadDir(NetnsDir)
	for _, e := range ents {
		var links []ipLink
		if ipJSON(ctx, filepath.Join(NetnsDir, e.Name()), &links, "addr", "show") == nil {
			note("network namespace "+e.Name(), links)
		}
	}
	for _, addr := range Addresses(a) {
		if where, ok := inUse[addr]; ok {
			p = append(p, wire.Problem{Code: "conflict", Message: fmt.Sprintf("address %s is already in use on %s (%s)", addr, host, where),
				Hint: "free it there, or move the container to a host where it is free"})
		}
	}
	return p
}

// hostVeth names the host side of interface iface of the attachment (≤ 15 bytes).
func hostVeth(a *wire.NetAttachment, iface string) string {
	h := fnv.New32a()
	h.Write([]byte(a.Netns + "/" + iface))
	return fmt.Sprintf("fy%08x", h.Sum32())
}

// Create recreates the attachment on this host: the named namespace, each interface as a veth
// with its MAC, MTU and addresses, the host side up on its bridge, and the routes. On error
// it removes what it made.
func Create(ctx context.Context, a *wire.NetAttachment) (err error) {
	if err := Validate(a); err != nil {
		return err
	}
	name := filepath.Base(a.Netns)
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = Remove(context.WithoutCancel(ctx), a.Netns)
		}
	}()
	steps := [][]string{{"ip", "-n", name, "link", "set", "lo", "up"}}
	for _, i := range a.Interfaces {
		hv := hostVeth(a, i.Name)
		steps = append(steps,
			[]string{"ip", "link", "add", hv, "type", "veth", "peer", "name", i.Name, "netns", name},
			[]string{"ip", "-n", name, "link", "set", i.Name, "address", i.MAC, "mtu", fmt.Sprint(i.MTU)},
			[]string{"ip", "link", "set", hv, "mtu", fmt.Sprint(i.MTU), "master", i.Bridge, "up"})
		for _, ad := range i.Addrs {
			steps = append(steps, []string{"ip", "-n", name, "addr", "add", ad, "dev", i.Name})
		}
		steps = append(steps, []string{"ip", "-n", name, "link", "set", i.Name, "up"})
	}
	for _, r := range a.Routes {
		s := []string{"ip", "-n", name, "route", "add", r.Dst}
		if r.Gateway != "" {
			s = append(s, "via", r.Gateway)
		}
		if r.Dev != "" {
			s = append(s, "dev", r.Dev)
		}
		steps = append(steps, s)
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// Isolate takes every interface of the namespace at path down but loopback, so that nothing its
// sockets still send (a close's FIN or RST) leaves it.
func Isolate(ctx context.Context, path string) error {
	var links []ipLink
	if err := ipJSON(ctx, path, &links, "link", "show"); err != nil {
		return err
	}
	for _, l := range links {
		if l.LinkType == "loopback" {
			continue
		}
		if _, err := inNetns(ctx, path, "", "ip", "link", "set", "dev", l.Name, "down"); err != nil {
			return fmt.Errorf("take %s down: %w", l.Name, err)
		}
	}
	return nil
}

// lockTable is the nftables table that locks a container's network namespace.
const lockTable = "ferry_lock"

// lockRules drop every packet in and out of the namespace but loopback's. Its priority runs
// them before any filter the container has of its own.
const lockRules = `table inet ` + lockTable + ` {
	chain in { type filter hook input priority -400; policy drop; iifname "lo" accept; }
	chain out { type filter hook output priority -400; policy drop; oifname "lo" accept; }
}
`

// Lock makes the namespace at path silent: nothing enters or leaves it but loopback. Between
// the freeze and the commit no copy of a container may talk: a packet its frozen sockets
// accepted after CRIU dumped them (an ACK for a peer's data) would be lost with the copy that
// does not win, and the peer's connection with it. Lock is idempotent.
func Lock(ctx context.Context, path string) error {
	if err := Unlock(ctx, path); err != nil {
		return err
	}
	if _, err := inNetns(ctx, path, lockRules, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("lock the container's network: %w", err)
	}
	return nil
}

// Unlock lifts Lock; a namespace that is not locked is fine.
func Unlock(ctx context.Context, path string) error {
	tables, err := inNetns(ctx, path, "", "nft", "list", "tables")
	if err != nil {
		return fmt.Errorf("unlock the container's network: %w", err)
	}
	if !Locked(tables) {
		return nil
	}
	if _, err := inNetns(ctx, path, "", "nft", "delete", "table", "inet", lockTable); err != nil {
		return fmt.Errorf("unlock the container's network: %w", err)
	}
	return nil
}

// Locked says whether `nft list tables` output lists the lock's table.
func Locked(nftTables string) bool {
	for _, l := range strings.Split(nftTables, "\n") {
		if strings.TrimSpace(l) == "table inet "+lockTable {
			return true
		}
	}
	return false
}

// Remove deletes a named network namespace (its veths go with it); a missing one is fine.
func Remove(ctx context.Context, path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return run(ctx, "ip", "netns", "del", filepath.Base(path))
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
