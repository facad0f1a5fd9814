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

// Listener is a net.Listener that enforces Limits.
type Listener struct {
	net.Listener
	limits Limits

	mu       sync.Mutex // guards open and byClient
	open     int
	byClient map[netip.Addr]int

	refusedMax, refusedPerClient atomic.Uint64
}

// Wrap returns l with the limits enforced on every connection it accepts.
func Wrap(l net.Listener, limits Limits) *Listener {
	return &Listener{Listener: l, limits: limits, byClient: map[netip.Addr]int{}}
}

// Accept returns the next connection within the limits; connections over them are closed as
// they arrive.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientAddr(c)
		l.mu.Lock()
		switch {
		case l.limits.Max > 0 && l.open >= l.limits.Max:
			l.refusedMax.Add(1)
		case l.limits.PerClient > 0 && l.byClient[client] >= l.limits.PerClient:
			l.refusedPerClient.Add(1)
		default:
			l.open++
			l.byClient[client]++
			l.mu.Unlock()
			return &conn{Conn: c, l: l, client: client}, nil
		}
		l.mu.Unlock()
		_ = c.Close()
	}
}

// Stats are a listener's counts, for metrics.
type Stats struct {
	Open                         int
	RefusedMax, RefusedPerClient uint64
}

// Stats returns the current counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return Stats{Open: open, RefusedMax: l.refusedMax.Load(), RefusedPerClient: l.refusedPerClient.Load()}
}

func (l *Listener) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byClient[client]--; l.byClient[client] <= 0 {
		delete(l.byClient, client)
	}
}

// clientAddr is the connection's remote IP (IPv4-mapped addresses unmapped, so one client is
// one key); the zero Addr for a connection without one (a Unix socket), which then shares one
// per-client budget.
func clientAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
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
	c.release.Do(func() { c.l.release(c.client) })
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
