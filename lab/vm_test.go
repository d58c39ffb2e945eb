package lab

import (
	"bytes"
	"strings"
	"testing"
)

func TestModuleOrder(t *testing.T) {
	dep := `kernel/fs/overlayfs/overlay.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
`
	got, err := ModuleOrder(dep, bootModules)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, strings.TrimSuffix(m[strings.LastIndex(m, "/")+1:], ".ko"))
	}
	want := "virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p overlay"
	if strings.Join(names, " ") != want {
		t.Fatalf("order %v\nwant %s", names, want)
	}
	if _, err := ModuleOrder(dep, []string{"nope"}); err == nil {
		t.Fatal("an unknown module was accepted")
	}
}

func TestCpio(t *testing.T) {
	var b bytes.Buffer
	w := newCpio(&b)
	w.dir("bin")
	w.file("bin/x", 0o755, []byte("hello"))
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if b.Len()%4 != 0 || !bytes.HasPrefix(b.Bytes(), []byte("070701")) || !bytes.Contains(b.Bytes(), []byte("bin/x\x00")) || !bytes.Contains(b.Bytes(), []byte("TRAILER!!!")) {
		t.Fatalf("not a newc archive: %q", b.String())
	}
}

func TestCommandScript(t *testing.T) {
	s := commandScript(VMOptions{Dir: "/work/it's", Env: []string{"A=b c"}, Argv: []string{"echo", "x'y"}})
	want := "#!/bin/sh\ncd '/work/it'\\''s' || exit 125\nexec env -i 'A=b c' 'echo' 'x'\\''y'\n"
	if s != want {
		t.Fatalf("%q\nwant %q", s, want)
	}
}
