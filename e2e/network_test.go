package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	ferrylab "github.com/ferry-project/ferry/lab"
)

// switchNS is the lab's switch: where clients of the containers' addresses live.
const switchNS = "ferrylab-sw"

// fromSwitch runs argv in the switch's network namespace (a client outside every host).
func fromSwitch(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", switchNS}, argv...)...).CombinedOutput()
	return string(out), err
}

// runNet starts a networked lab container on a (ferry-lab run a NAME --net ARGS…), removes it
// from both hosts when the test ends, and returns its address.
func runNet(t *testing.T, name string, args ...string) netip.Addr {
	t.Helper()
	mustLab(t, append([]string{"run", "a", name, "--net"}, args...)...)
	t.Cleanup(func() { lab(t, "rm", "a", name); lab(t, "rm", "b", name) })
	ip, ok := ferrylab.ContainerIP(name)
	if !ok {
		t.Fatalf("the lab recorded no address for %s", name)
	}
	return ip
}

// TestLabContainerNetwork: a container run with --net has its own network namespace on its
// host's bridge, with an address a client on the switch reaches; rm takes the namespace, the
// address and the switch's route away.
func TestLabContainerNetwork(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "netc", "--mem", "16", "--net")
	ip, ok := ferrylab.ContainerIP("netc")
	if !ok {
		t.Fatal("the lab recorded no address for netc")
	}
	if out, err := fromSwitch(t, "busybox", "ping", "-c", "1", "-W", "2", ip.String()); err != nil {
		t.Fatalf("the switch cannot reach netc at %s: %v\n%s", ip, err, out)
	}
	if out := mustLab(t, "exec", "a", "--", "ip", "netns", "list"); !strings.Contains(out, ferrylab.ContainerNetns("netc")) {
		t.Fatalf("a has no network namespace for netc: %s", out)
	}
	if got := ferrylab.RoutedTo(t.Context(), ip); got != "a" {
		t.Fatalf("the switch routes %s to %q, want a", ip, got)
	}
	mustLab(t, "rm", "a", "netc")
	if out := mustLab(t, "exec", "a", "--", "ip", "netns", "list"); strings.Contains(out, ferrylab.ContainerNetns("netc")) {
		t.Errorf("rm left netc's network namespace on a: %s", out)
	}
	if got := ferrylab.RoutedTo(t.Context(), ip); got != "" {
		t.Errorf("rm left the switch's route for %s (to %s)", ip, got)
	}
	if _, ok := ferrylab.ContainerIP("netc"); ok {
		t.Errorf("rm left netc's address record")
	}
	if _, err := os.Stat("/var/lib/ferry-lab/net/netc"); err == nil {
		t.Errorf("rm left /var/lib/ferry-lab/net/netc")
	}
}

// TestNetworkMovesWithTheContainer: a container on the lab's bridge network moves a → b and
// back keeping its address and MAC; the target recreates its network namespace before the
// restore (the task runs in it), the network hook routes the address to the new host (a client
// on the switch reaches it there), and the source's namespace is gone. A failed restore leaves
// the target without the namespace; an address already in use on the target is refused in
// preflight with nothing changed.
func TestNetworkMovesWithTheContainer(t *testing.T) {
	requireLab(t)
	ip := runNet(t, "netm", "--mem", "16")
	ns := ferrylab.ContainerNetns("netm")
	hasNetns := func(host string) bool {
		return strings.Contains(mustLab(t, "exec", host, "--", "ip", "netns", "list"), ns)
	}
	from, to := "a", "b"
	for _, strategy := range []string{"stop-copy", "post-copy"} {
		rep, r := migrate(t, from, "netm", to, "--strategy", strategy)
		if r.code != 0 || rep.Outcome != "committed" {
			t.Fatalf("%s %s→%s: exit %d %s %s\n%s", strategy, from, to, r.code, rep.Outcome, rep.Error, r.stderr)
		}
		if len(rep.Addresses) != 1 || rep.Addresses[0] != ip.String() || rep.NetworkHook != "ok" {
			t.Errorf("%s→%s: report addresses %v, network hook %q; want [%s], ok", from, to, rep.Addresses, rep.NetworkHook, ip)
		}
		mustLab(t, "check", to, "netm")
		if got := ferrylab.RoutedTo(t.Context(), ip); got != to {
			t.Errorf("after %s→%s the switch routes %s to %q", from, to, ip, got)
		}
		if out, err := fromSwitch(t, "busybox", "ping", "-c", "1", "-W", "2", ip.String()); err != nil {
			t.Errorf("after %s→%s the switch cannot reach %s: %v\n%s", from, to, ip, err, out)
		}
		link := mustLab(t, "exec", to, "--", "nsenter", "--net="+ferrylab.ContainerNetnsPath("netm"), "ip", "-o", "addr", "show", "eth0")
		if !strings.Contains(link, ip.String()+"/24") {
			t.Errorf("on %s eth0 lacks %s/24: %s", to, ip, link)
		}
		if l := mustLab(t, "exec", to, "--", "nsenter", "--net="+ferrylab.ContainerNetnsPath("netm"), "ip", "-o", "link", "show", "eth0"); !strings.Contains(l, "link/ether "+ferrylab.ContainerMAC(ip)+" ") {
			t.Errorf("on %s eth0 has not the MAC %s: %s", to, ferrylab.ContainerMAC(ip), l)
		}
		// The restored task runs in the recreated namespace, not in one of its own.
		pid := taskPID(t, to, "netm")
		inTask, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		ino := strings.TrimSpace(mustLab(t, "exec", to, "--", "stat", "-L", "-c", "%i", ferrylab.ContainerNetnsPath("netm")))
		if inTask != "net:["+ino+"]" {
			t.Errorf("on %s the task's network namespace is %s, the recreated one %s", to, inTask, ino)
		}
		if hasNetns(from) {
			t.Errorf("after %s→%s, %s still has the namespace %s", from, to, from, ns)
		}
		from, to = to, from
	}

	// A restore that fails on b: the namespace b made goes with the rollback.
	armFaults(t, "b", "receiver/restore error")
	rep, r := migrate(t, "a", "netm", "b")
	if r.code == 0 || rep.Outcome != "rolled_back" {
		t.Fatalf("with restore failing on b: exit %d %s %s", r.code, rep.Outcome, rep.Error)
	}
	if hasNetns("b") {
		t.Errorf("the rollback left %s on b", ns)
	}
	if !hasNetns("a") || ferrylab.RoutedTo(t.Context(), ip) != "a" {
		t.Errorf("the rollback touched a's network: namespace %v, route to %q", hasNetns("a"), ferrylab.RoutedTo(t.Context(), ip))
	}
	mustLab(t, "check", "a", "netm")
	assertNoResidue(t, "b", "netm", rep.ID)

	// The address already in use on b: refused before anything changes.
	mustLab(t, "exec", "b", "--", "ip", "addr", "add", ip.String()+"/32", "dev", "lo")
	defer lab(t, "exec", "b", "--", "ip", "addr", "del", ip.String()+"/32", "dev", "lo")
	rep, r = migrate(t, "a", "netm", "b")
	if r.code != 3 || rep.Outcome != "refused" || !strings.Contains(rep.Error, "address "+ip.String()+" is already in use on b") {
		t.Fatalf("with %s taken on b: exit %d %s %q", ip, r.code, rep.Outcome, rep.Error)
	}
	if hasNetns("b") {
		t.Errorf("the refusal left %s on b", ns)
	}
	mustLab(t, "check", "a", "netm")
	assertNoResidue(t, "b", "netm", rep.ID)
}

// TestNetworkLockedUntilCommit: between the freeze and the commit neither copy of a moving
// container talks — a frozen copy's kernel would otherwise still answer, and ACK a peer's data
// that the winning copy never sees. While ferry waits before its COMMIT (a failpoint holds it
// there), pings to the container's address get no answer: not from the switch (routed to the
// frozen source) nor from the target host (its bridge reaches the restored copy). After the
// commit the container answers from b; after a rolled-back move it answers from a again.
func TestNetworkLockedUntilCommit(t *testing.T) {
	requireLab(t)
	ip := runNet(t, "netl", "--mem", "16")
	ping := "busybox ping -c 1 -W 1 " + ip.String()
	fromSwitchOK := func() bool { _, err := fromSwitch(t, "sh", "-c", ping); return err == nil }
	fromHostOK := func(h string) bool { return lab(t, "exec", h, "--", "sh", "-c", ping).code == 0 }
	if !fromSwitchOK() {
		t.Fatal("the switch cannot reach the container before any move")
	}

	// Rolled back before the commit: the source's lock goes with the thaw.
	armFaults(t, "a", "source/before-commit error")
	rep, r := migrate(t, "a", "netl", "b")
	if r.code == 0 || rep.Outcome != "rolled_back" {
		t.Fatalf("with the commit failing: exit %d %s %s", r.code, rep.Outcome, rep.Error)
	}
	if !fromSwitchOK() {
		t.Error("after the rollback the container does not answer on a: its network stayed locked")
	}
	mustLab(t, "check", "a", "netl")

	// Held before the commit: both copies silent.
	armFaults(t, "a", "source/before-commit sleep:5s")
	cmd := exec.Command(binDir+"/ferry-lab", "exec", "a", "--", "ferry", "migrate", "netl", "b", "--output", "json", "--strategy", "stop-copy")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for lab(t, "exec", "b", "--", "sh", "-c", "grep -l '\"state\": *\"ready\"' /var/lib/ferry/migrations/*/journal.json").code != 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the migration never reached ready on b")
		}
		time.Sleep(100 * time.Millisecond)
	}
	switchAnswered, targetAnswered := fromSwitchOK(), fromHostOK("b")
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), `"committed"`) {
		t.Fatalf("held migration: %v, report %s", err, out.String())
	}
	if switchAnswered {
		t.Error("before the commit the frozen source answered the switch: its network was not locked")
	}
	if targetAnswered {
		t.Error("before the commit the restored copy on b answered: its network was not locked")
	}
	if !fromSwitchOK() || !fromHostOK("b") {
		t.Error("after the commit the container does not answer from b: its network stayed locked")
	}
	mustLab(t, "check", "b", "netl")
}
