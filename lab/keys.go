package lab

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

type keyPair struct {
	private []byte // OpenSSH PEM
	public  []byte // authorized_keys line
}

type labKeys struct {
	operator keyPair
	hosts    map[string]keyPair
}

func newKey(comment string) (keyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return keyPair{}, err
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{private: pem.EncodeToMemory(blk), public: ssh.MarshalAuthorizedKey(spub)}, nil
}

// makeKeys creates the lab operator's key and one host key per host.
func makeKeys() (*labKeys, error) {
	k := &labKeys{hosts: map[string]keyPair{}}
	var err error
	if k.operator, err = newKey("ferry-lab operator"); err != nil {
		return nil, err
	}
	for _, h := range Hosts {
		if k.hosts[h.Name], err = newKey("ferry-lab host " + h.Name); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// knownHosts pins every host's key under its name and address.
func (k *labKeys) knownHosts() []byte {
	var b strings.Builder
	for _, h := range Hosts {
		fmt.Fprintf(&b, "%s,%s %s", h.Name, h.Addr, k.hosts[h.Name].public)
	}
	return []byte(b.String())
}

// writeSSHFiles writes the host key and the operator's ~/.ssh for host h.
func (k *labKeys) writeSSHFiles(h Host) error {
	dotSSH := filepath.Join(h.rootDir(), "root/.ssh")
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(h.dir(), "ssh_host_ed25519_key"), k.hosts[h.Name].private, 0o600},
		{filepath.Join(h.dir(), "ssh_host_ed25519_key.pub"), k.hosts[h.Name].public, 0o644},
		{filepath.Join(dotSSH, "id_ed25519"), k.operator.private, 0o600},
		{filepath.Join(dotSSH, "id_ed25519.pub"), k.operator.public, 0o644},
		{filepath.Join(dotSSH, "authorized_keys"), k.operator.public, 0o600},
		{filepath.Join(dotSSH, "known_hosts"), k.knownHosts(), 0o644},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}
