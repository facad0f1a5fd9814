package authzcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/platformauth/envoy-okta-authz/internal/proxyconf"
	"github.com/platformauth/envoy-okta-authz/policy"
)

// proxyConfigMain runs `authz proxy-config [flags] nginx|traefik|envoy`: with the service's own
// flags and policy, it prints the part of the proxy's configuration that must mirror the
// identity headers the service sets (copy them from an allow, clear a client's copies).
func proxyConfigMain(args []string, getenv func(string) string, out, errOut io.Writer) int {
	c, rest, err := parseArgs("authz proxy-config", args, getenv, out, nil)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(errOut, "authz proxy-config: invalid configuration:\n%v\n", err)
		return 2
	}
	if len(rest) != 1 {
		fmt.Fprintln(errOut, "authz proxy-config: name one proxy: nginx, traefik or envoy")
		return 2
	}
	snippet, err := proxySnippet(c, rest[0])
	if err != nil {
		fmt.Fprintf(errOut, "authz proxy-config: %v\n", err)
		return 2
	}
	fmt.Fprint(out, snippet)
	return 0
}

// proxySnippet writes the snippet for proxy from c's policy (or flags alone).
func proxySnippet(c *config, proxy string) (string, error) {
	p := c.PolicyRules
	if p == nil {
		p = policy.Default(&c.Identity)
	}
	return proxyconf.Write(proxy, p.ProxyHeaders(), p.Default.Identity().ForwardAuthorization, p.CredentialPlaces())
}
