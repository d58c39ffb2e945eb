// Package transport carries ferry's migration between hosts: one SSH connection (x/crypto/ssh,
// host keys checked against known_hosts, never accepted silently) holding a control channel to
// ferry-receiver and one channel per bulk stream (rsync, checkpoint images).
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// ErrHostKey marks a refused host key (unknown or changed).
var ErrHostKey = errors.New("host key refused")

// DialOptions configure Dial.
type DialOptions struct {
	// IdentityFiles are private keys to offer; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa
	// (those that exist). Keys in ssh-agent (SSH_AUTH_SOCK) are offered too.
	IdentityFiles []string
	// KnownHosts files; default ~/.ssh/known_hosts.
	KnownHosts []string
	// Timeout bounds connecting and the SSH handshake.
	Timeout time.Duration
	// KeepAlive is the interval of keepalive probes; a link that misses 3 is closed. 0: 10s.
	KeepAlive time.Duration
	Log       *slog.Logger
}

// Client is an SSH connection to a target host.
type Client struct {
	*ssh.Client
	Endpoint Endpoint
	log      *slog.Logger
	done     chan struct{}
}

func home() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/root"
}

// Dial connects to ep and authenticates.
func Dial(ctx context.Context, ep Endpoint, o DialOptions) (*Client, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if len(o.KnownHosts) == 0 {
		o.KnownHosts = []string{filepath.Join(home(), ".ssh", "known_hosts")}
	}
	hostKeyCB, algos, err := hostKeyCallback(o.KnownHosts, ep)
	if err != nil {
		return nil, err
	}
	auth, closeAgent, err := authMethods(o.IdentityFiles)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	cfg := &ssh.ClientConfig{
		User:              ep.User,
		Auth:              auth,
		HostKeyCallback:   hostKeyCB,
		HostKeyAlgorithms: algos,
		Timeout:           o.Timeout,
	}
	d := net.Dialer{Timeout: o.Timeout}
	conn, err := d.DialContext(ctx, "tcp", ep.Address())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", ep.Address(), errors.Join(err, errdefs.ErrTransient))
	}
	_ = conn.SetDeadline(time.Now().Add(o.Timeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, ep.Address(), cfg)
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrHostKey) {
			return nil, err
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%s refused ferry's keys (tried ssh-agent and %s): %w", ep, describeIdentities(o.IdentityFiles), errors.Join(err, errdefs.ErrPrecondition))
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", ep, err)
	}
	_ = conn.SetDeadline(time.Time{})
	cl := &Client{Client: ssh.NewClient(c, chans, reqs), Endpoint: ep, log: o.Log, done: make(chan struct{})}
	ka := o.KeepAlive
	if ka == 0 {
		ka = 10 * time.Second
	}
	go cl.keepAlive(ka)
	return cl, nil
}

// keepAlive closes the connection when the peer stops answering, so that a dead link is noticed
// instead of hanging a migration.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		res := make(chan error, 1)
		go func() {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			res <- err
		}()
		select {
		case err := <-res:
			if err != nil {
				return // connection closed
			}
			missed = 0
		case <-time.After(every):
			if missed++; missed >= 3 {
				c.log.Error("ssh link dead: no keepalive answer", "peer", c.Endpoint.String())
				_ = c.Client.Close()
				return
			}
		}
	}
}

// Close closes the connection.
func (c *Client) Close() error {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return c.Client.Close()
}

func describeIdentities(files []string) string {
	if len(files) == 0 {
		return "~/.ssh/id_ed25519, id_ecdsa, id_rsa"
	}
	return strings.Join(files, ", ")
}

func authMethods(files []string) ([]ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	closer := func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			if ss, err := agent.NewClient(conn).Signers(); err == nil {
				signers = append(signers, ss...)
			}
			closer = func() { conn.Close() }
		}
	}
	explicit := len(files) > 0
	if !explicit {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			files = append(files, filepath.Join(home(), ".ssh", n))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if !explicit && errors.Is(err, os.ErrNotExist) {
				continue
			}
			closer()
			return nil, nil, fmt.Errorf("identity %s: %w", f, err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			if explicit {
				closer()
				return nil, nil, fmt.Errorf("identity %s is passphrase-protected: load it into ssh-agent (ssh-add %s): %w", f, f, errdefs.ErrPrecondition)
			}
			continue
		}
		if err != nil {
			closer()
			return nil, nil, fmt.Errorf("identity %s: %w", f, err)
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		closer()
		return nil, nil, fmt.Errorf("no SSH key to offer: none in ssh-agent and none of %s exists: %w", describeIdentities(files), errdefs.ErrPrecondition)
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closer, nil
}

// hostKeyCallback checks host keys against known_hosts files. It also returns the key algorithms
// known for this host, so that the server is asked for a key type we can verify.
func hostKeyCallback(files []string, ep Endpoint) (ssh.HostKeyCallback, []string, error) {
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	if len(existing) == 0 {
		return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			return fmt.Errorf("the host key of %s is unknown: %s does not exist. Verify the key's fingerprint %s with the host's owner, then add it (for example: ssh-keyscan -p %d %s >> %s): %w",
				ep.Host, strings.Join(files, ", "), ssh.FingerprintSHA256(key), ep.Port, ep.Host, files[0], ErrHostKey)
		}, nil, nil
	}
	cb, err := knownhosts.New(existing...)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts: %w", err)
	}
	wrapped := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case errors.As(err, &re):
			return fmt.Errorf("the host key of %s (%s) is revoked in known_hosts: refusing to connect: %w", ep.Host, ssh.FingerprintSHA256(key), ErrHostKey)
		case errors.As(err, &ke) && len(ke.Want) == 0:
			return fmt.Errorf("the host key of %s is unknown (not in %s). Verify its fingerprint %s with the host's owner, then add it (for example: ssh-keyscan -p %d %s >> %s): %w",
				ep.Host, strings.Join(existing, ", "), ssh.FingerprintSHA256(key), ep.Port, ep.Host, existing[0], ErrHostKey)
		case errors.As(err, &ke):
			w := ke.Want[0]
			return fmt.Errorf("HOST KEY CHANGED for %s: %s:%d has %s, the host now presents %s. Someone may be intercepting the connection, or the host was reinstalled; refusing to connect until known_hosts is corrected: %w",
				ep.Host, w.Filename, w.Line, ssh.FingerprintSHA256(w.Key), ssh.FingerprintSHA256(key), ErrHostKey)
		}
		return fmt.Errorf("check host key of %s: %w", ep.Host, errors.Join(err, ErrHostKey))
	}
	// Ask the callback which keys it knows for this host: it reports them in a KeyError.
	var algos []string
	probe := cb(knownhosts.Normalize(ep.Address()), &net.TCPAddr{IP: net.IPv4(0, 0, 0, 0)}, dummyKey{})
	var ke *knownhosts.KeyError
	if errors.As(probe, &ke) {
		for _, k := range ke.Want {
			switch t := k.Key.Type(); t {
			case ssh.KeyAlgoRSA:
				algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
			default:
				algos = append(algos, t)
			}
		}
	}
	return wrapped, algos, nil
}

// dummyKey never matches a known key; used to list the known ones.
type dummyKey struct{}

func (dummyKey) Type() string                        { return "ferry-probe" }
func (dummyKey) Marshal() []byte                     { return []byte("ferry-probe") }
func (dummyKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe") }
