package connlimit

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve accepts on l and holds every connection open until the test ends; accepted gets each.
func serve(t *testing.T, l net.Listener) (accepted chan net.Conn) {
	t.Helper()
	accepted = make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	return accepted
}

// dialFrom connects to addr from the loopback address src and reports whether the server kept
// the connection (a refused one is closed at once: a read sees EOF).
func dialFrom(t *testing.T, src, addr string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	if err == io.EOF {
		return c, false
	}
	var ne net.Error
	require.ErrorAs(t, err, &ne, "the server never writes: a kept connection times out reading")
	return c, true
}

func TestLimits(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := Wrap(raw, Limits{Max: 4, PerClient: 2})
	accepted := serve(t, l)
	addr := raw.Addr().String()

	_, ok := dialFrom(t, "127.0.0.2", addr)
	assert.True(t, ok)
	first := <-accepted
	_, ok = dialFrom(t, "127.0.0.2", addr)
	assert.True(t, ok)
	_, ok = dialFrom(t, "127.0.0.2", addr)
	assert.False(t, ok, "a third connection from one client is over its share")
	_, ok = dialFrom(t, "127.0.0.3", addr)
	assert.True(t, ok, "another client still gets in")
	_, ok = dialFrom(t, "127.0.0.4", addr)
	assert.True(t, ok)
	_, ok = dialFrom(t, "127.0.0.5", addr)
	assert.False(t, ok, "over the total")

	st := l.Stats()
	assert.Equal(t, Stats{Open: 4, RefusedMax: 1, RefusedPerClient: 1}, st)

	// A closed connection gives its place back, once however often it is closed.
	require.NoError(t, first.Close())
	_ = first.Close()
	assert.Equal(t, 3, l.Stats().Open)
	_, ok = dialFrom(t, "127.0.0.2", addr)
	assert.True(t, ok, "the client's share is free again")
	assert.Equal(t, 4, l.Stats().Open)
}
