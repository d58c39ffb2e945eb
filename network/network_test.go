package network

import (
	"strings"
	"testing"

	"github.com/ferry-project/ferry/transport/wire"
)

func TestValidate(t *testing.T) {
	good := func() *wire.NetAttachment {
		return &wire.NetAttachment{
			Netns: "/run/netns/ferry-web",
			Interfaces: []wire.NetInterface{{Name: "eth0", MAC: "02:fe:c6:13:00:02", MTU: 1500,
				Addrs: []string{"198.19.0.2/24", "fd00::2/64"}, Bridge: "ferry0"}},
			Routes: []wire.NetRoute{{Dst: "default", Gateway: "198.19.0.1", Dev: "eth0"}, {Dst: "10.0.0.0/8", Gateway: "198.19.0.1"}},
		}
	}
	if err := Validate(good()); err != nil {
		t.Fatalf("good attachment refused: %v", err)
	}
	for name, spoil := range map[string]func(a *wire.NetAttachment){
		"netns elsewhere":     func(a *wire.NetAttachment) { a.Netns = "/proc/1/ns/net" },
		"netns escaping":      func(a *wire.NetAttachment) { a.Netns = "/run/netns/../../proc/1/ns/net" },
		"netns dot-dot":       func(a *wire.NetAttachment) { a.Netns = "/run/netns/.." },
		"no interface":        func(a *wire.NetAttachment) { a.Interfaces = nil },
		"long interface":      func(a *wire.NetAttachment) { a.Interfaces[0].Name = "eth0123456789abc" },
		"interface option":    func(a *wire.NetAttachment) { a.Interfaces[0].Name = "-eth0" },
		"bridge with a space": func(a *wire.NetAttachment) { a.Interfaces[0].Bridge = "br0 up" },
		"bad MAC":             func(a *wire.NetAttachment) { a.Interfaces[0].MAC = "02:fe:c6:13:00" },
		"tiny MTU":            func(a *wire.NetAttachment) { a.Interfaces[0].MTU = 10 },
		"bad address":         func(a *wire.NetAttachment) { a.Interfaces[0].Addrs = []string{"198.19.0.2"} },
		"bad route":           func(a *wire.NetAttachment) { a.Routes[0].Dst = "everywhere" },
		"bad gateway":         func(a *wire.NetAttachment) { a.Routes[0].Gateway = "gw" },
		"bad route device":    func(a *wire.NetAttachment) { a.Routes[0].Dev = "eth0;reboot" },
	} {
		a := good()
		spoil(a)
		if err := Validate(a); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

func TestAddresses(t *testing.T) {
	a := &wire.NetAttachment{Interfaces: []wire.NetInterface{{Addrs: []string{"198.19.0.2/24", "fd00::2/64"}}, {Addrs: []string{"10.1.0.3/16"}}}}
	if got := strings.Join(Addresses(a), " "); got != "198.19.0.2 fd00::2 10.1.0.3" {
		t.Errorf("Addresses = %q", got)
	}
}

func TestLocked(t *testing.T) {
	if !Locked("table ip nat\ntable inet ferry_lock\n") {
		t.Error("the lock's table not found")
	}
	if Locked("table inet ferry_lock_other\ntable ip ferry_lock\n") || Locked("") {
		t.Error("another table taken for the lock")
	}
}

func TestNamed(t *testing.T) {
	for p, want := range map[string]bool{
		"/run/netns/ferry-web": true, "/run/netns/a": true,
		"/run/netns/../x": false, "/run/netns/a b": false, "/proc/1/ns/net": false, "/run/netns": false, "": false,
		"/run/netns/sub/x": false,
	} {
		if got := Named(p); got != want {
			t.Errorf("Named(%q) = %v, want %v", p, got, want)
		}
	}
}
