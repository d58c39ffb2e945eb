package transport

import (
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// Endpoint is an SSH destination: [user@]host[:port].
type Endpoint struct {
	User string
	Host string
	Port int
}

// ParseEndpoint parses [user@]host[:port]; IPv6 addresses go in brackets ([::1]:22).
func ParseEndpoint(s string) (Endpoint, error) {
	var ep Endpoint
	if s == "" {
		return ep, fmt.Errorf("empty destination: %w", errdefs.ErrInvalid)
	}
	if u, rest, ok := strings.Cut(s, "@"); ok {
		if u == "" {
			return ep, fmt.Errorf("destination %q: empty user: %w", s, errdefs.ErrInvalid)
		}
		ep.User, s = u, rest
	}
	ep.Port = 22
	host := s
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			if !strings.HasPrefix(s, "[") {
				return ep, fmt.Errorf("destination %q: %v: %w", s, err, errdefs.ErrInvalid)
			}
			h = strings.Trim(s, "[]")
		} else {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return ep, fmt.Errorf("destination %q: bad port %q: %w", s, p, errdefs.ErrInvalid)
			}
			ep.Port = n
		}
		host = h
	}
	if host == "" || strings.ContainsAny(host, " /@") {
		return ep, fmt.Errorf("destination %q: bad host: %w", s, errdefs.ErrInvalid)
	}
	ep.Host = host
	if ep.User == "" {
		if u, err := user.Current(); err == nil {
			ep.User = u.Username
		} else {
			ep.User = "root"
		}
	}
	return ep, nil
}

// Address is host:port for dialing.
func (e Endpoint) Address() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

func (e Endpoint) String() string {
	s := e.User + "@" + e.Host
	if e.Port != 22 {
		s = e.User + "@" + net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
	}
	return s
}
