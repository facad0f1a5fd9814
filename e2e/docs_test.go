package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/devstack"
	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// A tested block is a fenced block whose info string is "sh tested" (run against the local
// stack with nginx in front) or "sh tested-no-proxy" (against the stack without a proxy).
var fence = regexp.MustCompile("(?ms)^```sh (tested(?:-no-proxy)?)\n(.*?)^```")

// expectation is a curl line's trailing comment naming the status it answers: "# → 401" or
// "# 401: no token".
var expectation = regexp.MustCompile(`^(curl .*?)\s+#\s*(?:→\s*)?([1-5]\d\d)\b.*$`)

// script turns a file's tested blocks of one kind into one bash script: commands run in order
// (exports carry over), and a curl line with an expected status fails unless the response's
// status line has it.
func script(blocks []string) string {
	var b strings.Builder
	b.WriteString("set -euo pipefail\n")
	b.WriteString(`__check() { local first="${2%%$'\n'*}"; [[ "$first" == *" $1"* ]] || { echo "expected $1, got: $first" >&2; exit 1; }; }` + "\n")
	for _, block := range blocks {
		for _, line := range strings.Split(block, "\n") {
			if m := expectation.FindStringSubmatch(line); m != nil {
				fmt.Fprintf(&b, "__out=$(%s)\n__check %s \"$__out\"\n", m[1], m[2])
				continue
			}
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// documented rewrites the documented ports to the stack's.
func documented(s *devstack.Stack) *strings.Replacer {
	port := func(u string) string {
		if pu, err := url.Parse(u); err == nil && pu.Host != "" {
			u = pu.Host
		}
		_, p, _ := net.SplitHostPort(u)
		return p
	}
	var pairs []string
	for doc, actual := range map[string]string{"8080": port(s.Proxy), "9001": port(s.GRPC), "9002": port(s.HTTP),
		"9003": port(s.Admin), "9400": port(s.Issuer), "3000": port(s.API)} {
		if actual == "" {
			continue
		}
		for _, host := range []string{"localhost:", "127.0.0.1:"} {
			pairs = append(pairs, host+doc, host+actual)
		}
	}
	return strings.NewReplacer(pairs...)
}

// TestDocsCommands runs every tested command of the README and docs/ against the local stack,
// as a reader would type them, so the docs cannot go stale.
func TestDocsCommands(t *testing.T) {
	testenv.Program(t, "curl", "curl")
	files, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	files = append(files, "../README.md")
	byKind := map[string]map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range fence.FindAllStringSubmatch(string(data), -1) {
			if byKind[m[1]] == nil {
				byKind[m[1]] = map[string][]string{}
			}
			byKind[m[1]][f] = append(byKind[m[1]][f], m[2])
		}
	}
	require.NotEmpty(t, byKind["tested"], "the docs have tested commands")
	stacks := map[string]*devstack.Stack{"tested": startDevstack(t, nginxBinary(t), ""), "tested-no-proxy": startDevstack(t, "-", "")}
	for kind, perFile := range byKind {
		s := stacks[kind]
		issuer, err := url.Parse(s.Issuer)
		require.NoError(t, err)
		for f, blocks := range perFile {
			t.Run(filepath.Base(f)+" "+kind, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "bash", "-c", documented(s).Replace(script(blocks)))
				cmd.Dir = ".."
				// The dev issuer's tools and authz --dev find this stack's issuer by their
				// environment twins, as they would find the documented one by default.
				cmd.Env = append(os.Environ(), "DEVIDP_ISSUER="+s.Issuer, "AUTHZ_DEV_ADDR=127.0.0.1:"+issuer.Port())
				// Files the commands create in the working tree (a DPoP key) go after the run.
				before, err := filepath.Glob("../*")
				require.NoError(t, err)
				out, err := cmd.CombinedOutput()
				after, _ := filepath.Glob("../*")
				for _, p := range after {
					if !slices.Contains(before, p) {
						_ = os.RemoveAll(p)
					}
				}
				require.NoError(t, err, "%s's tested commands failed:\n%s", f, out)
			})
		}
	}
}
