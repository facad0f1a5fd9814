// Package version reports what a binary was built from, from the Go build information: the
// module version (a tag when installed with go install …@version, "(devel)" from a checkout),
// the VCS revision and time when built from a git checkout, and the Go version.
package version

import (
	"fmt"
	"runtime/debug"
)

// String is one line: "authz v1.2.0 (revision 1a2b3c4d5e6f, 2026-11-30T12:00:00Z, modified) go1.26.8".
func String(command string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return command + " (no build information)"
	}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	out := command + " " + v
	if rev != "" {
		out += fmt.Sprintf(" (revision %.12s, %s%s)", rev, at, modified)
	}
	return out + " " + bi.GoVersion
}
