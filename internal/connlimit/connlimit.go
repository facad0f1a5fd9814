// Package connlimit bounds the connections a listener holds open: in all, and per client
// address, so that no single client can take every file descriptor (or the memory each idle
// connection costs) and leave the service unable to answer anyone else.
//
// A connection over a limit is accepted and closed at once, and counted: left in the kernel's
// backlog (as a blocking limiter would) it would hold every later client, the legitimate ones
// included, waiting until the flood's connections go idle and time out.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Limits bound a listener. Zero means unlimited.
type Limits struct {
	// Max is how many connections may be open at once.
	Max int
	// PerClient is how many of them one client address (IP) may hold.
	PerClient int
}

// Slots count what clients hold at once — connections, calls — against Limits.
type Slots struct {
	limits Limits

	mu       sync.Mutex // guards open and byClient
	open     int
	byClient map[netip.Addr]int

	refusedMax, refusedPerClient atomic.Uint64
}

// NewSlots returns empty Slots under limits.
func NewSlots(limits Limits) *Slots {
	return &Slots{limits: limits, byClient: map[netip.Addr]int{}}
}

// Take takes a slot for client, or counts a refusal and reports false when a limit is reached.
func (s *Slots) Take(client netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.limits.Max > 0 && s.open >= s.limits.Max:
		s.refusedMax.Add(1)
	case s.limits.PerClient > 0 && s.byClient[client] >= s.limits.PerClient:
		s.refusedPerClient.Add(1)
	default:
		s.open++
		s.byClient[client]++
		return true
	}
	return false
}

// Release gives back a slot client took.
func (s *Slots) Release(client netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.byClient[client]--; s.byClient[client] <= 0 {
		delete(s.byClient, client)
	}
}

// Stats are the counts, for metrics.
type Stats struct {
	Open                         int
	RefusedMax, RefusedPerClient uint64
}

// Stats returns the current counts.
func (s *Slots) Stats() Stats {
	s.mu.Lock()
	open := s.open
	s.mu.Unlock()
	return Stats{Open: open, RefusedMax: s.refusedMax.Load(), RefusedPerClient: s.refusedPerClient.Load()}
}

// Listener is a net.Listener that enforces Limits on its connections.
type Listener struct {
	net.Listener
	*Slots
}

// Wrap returns l with the limits enforced on every connection it accepts.
func Wrap(l net.Listener, limits Limits) *Listener {
	return &Listener{Listener: l, Slots: NewSlots(limits)}
}

// Accept returns the next connection within the limits; connections over them are closed as
// they arrive.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := ClientAddr(c.RemoteAddr())
		if l.Take(client) {
			return &conn{Conn: c, l: l, client: client}, nil
		}
		_ = c.Close()
	}
}

// ClientAddr is a remote address's IP (IPv4-mapped addresses unmapped, so one client is one
// key); the zero Addr for an address without one (a Unix socket), which then shares one
// per-client budget.
func ClientAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr: // the usual case, without formatting and parsing the address
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// conn releases its place once, on the first Close.
type conn struct {
	net.Conn
	l       *Listener
	client  netip.Addr
	release sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release.Do(func() { c.l.Release(c.client) })
	return err
}

// CloseWrite half-closes a TCP connection, as net/http does before closing one it answered
// with an error (the limiter must not hide the method it looks for).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
