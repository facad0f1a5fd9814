// Package testenv is what tests need from the machine: programs from Debian that a test drives
// for real (nginx, redis-server, prometheus, curl…), and free loopback addresses for servers that
// bind them themselves.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// Program returns the path of the first of names found (a name on PATH or a path). Without any,
// the test fails when CI is set — .ci/run installs the package, and a real-server proof must not
// silently vanish — and skips elsewhere. pkg is the Debian package that provides it.
func Program(t testing.TB, pkg string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	Missing(t, names[0], "apt-get install -y "+pkg)
	return ""
}

// Missing fails the test when CI is set and skips it elsewhere, saying how to install what.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI (%s); .ci/run installs it", what, install)
	}
	t.Skipf("%s not installed (%s); skipped outside CI", what, install)
}

// FreeAddr reserves a loopback address (127.0.0.1:port) for a server that must bind it itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
