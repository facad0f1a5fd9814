package helm

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/authzcmd"
)

// envOnly are variables the service reads that are no flag's twin: the introspection client
// secret, kept out of the command line.
var envOnly = []string{"AUTHZ_INTROSPECTION_CLIENT_SECRET"}

var helpFlag = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)

// serviceFlags are the flags `authz --help` lists, read from the service's own command.
func serviceFlags(t *testing.T) map[string]bool {
	t.Helper()
	var out, errOut bytes.Buffer
	authzcmd.Main(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &errOut)
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(out.String()+errOut.String(), -1) {
		flags[m[1]] = true
	}
	require.Contains(t, flags, "issuer", "authz --help lists the flags:\n%s%s", out.String(), errOut.String())
	return flags
}

// flagOfEnv is the flag whose environment twin name is: AUTHZ_JWKS_URL → jwks-url.
func flagOfEnv(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "AUTHZ_")
	return strings.ReplaceAll(strings.ToLower(rest), "_", "-"), ok
}

// checkConfig runs the service's own configuration check (authz --check-config) with an
// environment, returning its exit status and what it printed.
func checkConfig(env map[string]string) (int, string) {
	var out bytes.Buffer
	code := authzcmd.Main(context.Background(), []string{"--check-config"}, func(k string) string { return env[k] }, &out, &out)
	return code, out.String()
}
