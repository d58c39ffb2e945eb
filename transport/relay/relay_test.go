package relay

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRunBothWays relays a request/response exchange and hashes the outgoing direction.
func TestRunBothWays(t *testing.T) {
	ours, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	rem, peer, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	remote, _ := net.FileConn(rem)
	rem.Close()
	out := bytes.Repeat([]byte("page"), 100000)
	go func() { // the far side: read everything, answer, close
		got, _ := io.ReadAll(peer)
		_, _ = peer.Write([]byte("ack:" + string(rune('0'+len(got)%10))))
		peer.Close()
	}()
	go func() { // the local process: write, half-close, read the answer
		_, _ = theirs.Write(out)
		_ = unix.Shutdown(int(theirs.Fd()), unix.SHUT_WR)
		b, _ := io.ReadAll(theirs)
		if string(b) != "ack:0" {
			t.Errorf("answer %q", b)
		}
		theirs.Close()
	}()
	sum, err := Run(ours, remote.(*net.UnixConn))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Bytes != int64(len(out)) || sum.Checksum != fmt.Sprintf("crc32c:%08x", crc32.Checksum(out, castagnoli)) {
		t.Fatalf("sum %+v", sum)
	}
}
