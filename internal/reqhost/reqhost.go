// Package reqhost reads the host of a request as the proxies in front route on it, or refuses
// it when they may not agree.
//
// A rule that matches hosts is only as safe as the host it compares with the one the proxy
// routes the request to. nginx routes on the Host header up to its first ":" and never checks
// what follows (admin.example.com:1:2 routes to admin.example.com); Envoy matches virtual hosts
// on the whole :authority; a DPoP proof's htu is built from the host and port. So the only
// hosts accepted are those every reader splits the same way: a DNS-style name (letters,
// digits, "-", "_", dot-separated labels, one trailing dot allowed), an IPv4 address, or an
// IPv6 literal in brackets, then optionally ":" and a port of one to five digits. Anything else
// — another colon, an empty or non-numeric port, "@", "?", "#", "/", "%", spaces — is refused.
package reqhost

import (
	"errors"
	"net/netip"
	"strings"
)

// ErrInvalid is returned for a host that is not a host name, address or IPv6 literal with an
// optional numeric port.
var ErrInvalid = errors.New("not a host[:port] every proxy reads alike")

// maxHostBytes bounds a host name (DNS: 253 characters, and a trailing dot).
const maxHostBytes = 254

// Host is a parsed request host.
type Host struct {
	// Name is the host as routes compare it: lower-case, without the trailing dot of a fully
	// qualified name; an IPv6 literal keeps its brackets.
	Name string
	// Port is the port as sent (digits), or "".
	Port string
}

// Authority is the host and port as a URI's authority: Name, and ":" Port when there is one.
func (h Host) Authority() string {
	if h.Port == "" {
		return h.Name
	}
	return h.Name + ":" + h.Port
}

// Parse reads a Host header (or :authority) value. The empty string is the empty Host (an
// HTTP/1.0 request without one).
func Parse(s string) (Host, error) {
	if s == "" {
		return Host{}, nil
	}
	name, port := s, ""
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Host{}, ErrInvalid
		}
		name, port = s[:end+1], s[end+1:]
		addr, err := netip.ParseAddr(name[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return Host{}, ErrInvalid
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			name, port = s[:i], s[i:]
		}
		if !validName(name) {
			return Host{}, ErrInvalid
		}
	}
	if port != "" {
		if port[0] != ':' || !validPort(port[1:]) {
			return Host{}, ErrInvalid
		}
		port = port[1:]
	}
	return Host{Name: strings.TrimSuffix(strings.ToLower(name), "."), Port: port}, nil
}

// validName reports whether name is dot-separated labels of letters, digits, "-" and "_",
// with at most a trailing dot.
func validName(name string) bool {
	if name == "" || len(name) > maxHostBytes || name[0] == '.' || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}
