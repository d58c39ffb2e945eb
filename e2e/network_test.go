package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

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
