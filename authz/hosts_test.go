package authz

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/reqhost"
	"github.com/platformauth/envoy-okta-authz/policy"
)

// TestHostsAsTheProxyRoutes: a host rule judges the host the proxy routes on. A host nginx and
// Envoy may split differently is refused (nginx routes admin.example.com:1:2 to
// admin.example.com, whose rule it used to escape into the default one).
func TestHostsAsTheProxyRoutes(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(must(policy.Load([]byte(`
rules:
  - name: admin
    match: { hosts: [admin.example.com] }
    require: { scopes: [admin] }
`), []string{"default"})))
	reader := e.mint(t, nil) // messages:read only
	for _, tc := range []struct {
		host   string
		want   Outcome
		reason *Reason
		rule   string
	}{
		{"admin.example.com", InsufficientScope, policy.ErrInsufficientScope, "admin"},
		{"ADMIN.Example.com.", InsufficientScope, policy.ErrInsufficientScope, "admin"},
		{"admin.example.com:8443", InsufficientScope, policy.ErrInsufficientScope, "admin"},
		{"public.example.com", Allow, nil, "default"},
		{"admin.example.com:1:2", InvalidRequest, ErrInvalidHost, ""},
		{"admin.example.com:", InvalidRequest, ErrInvalidHost, ""},
		{"admin.example.com:x", InvalidRequest, ErrInvalidHost, ""},
		{"admin.example.com?", InvalidRequest, ErrInvalidHost, ""},
		{"admin.example.com#x", InvalidRequest, ErrInvalidHost, ""},
		{"admin.example.com/..", InvalidRequest, ErrInvalidHost, ""},
		{"x@admin.example.com", InvalidRequest, ErrInvalidHost, ""},
	} {
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Host: tc.host, Path: "/x",
			Authorization: []string{"Bearer " + reader}})
		assert.Equal(t, tc.want, d.Outcome, "Host %q: %v %s", tc.host, d.Reason, d.Detail)
		assert.Equal(t, tc.reason, d.Reason, "Host %q", tc.host)
		assert.Equal(t, tc.rule, d.Rule, "Host %q", tc.host)
	}

	t.Run("a policy host must be a host name", func(t *testing.T) {
		for _, bad := range []string{"admin.example.com/x", "a b", "x@y", "admin.example.com:1:2", ""} {
			_, err := policy.Load([]byte("rules:\n  - match: { hosts: ['"+bad+"'] }\n"), []string{"default"})
			assert.ErrorContains(t, err, "is not a host name", "host %q", bad)
		}
	})
}

// TestDPoPURIFromAValidHostOnly: a Host that would end the authority early ("api.example?",
// "api.example/") made the htu's path "/", so a proof minted for "/" passed on every path.
func TestDPoPURIFromAValidHostOnly(t *testing.T) {
	d := newDPoPEnv(t, nil)
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	for _, host := range []string{"api.example?", "api.example#", "api.example/"} {
		r := d.request("DPoP", bound, d.proof(t, d.key, "GET", "https://api.example/", bound))
		r.Host = host
		dec := d.az.Decide(context.Background(), r)
		assert.Equal(t, InvalidRequest, dec.Outcome, "Host %q", host)
		assert.Equal(t, ErrInvalidHost, dec.Reason, "Host %q", host)
	}
	// The same proof for the real URI is fine, with the port as sent.
	r := d.request("DPoP", bound, d.proof(t, d.key, "GET", "https://api.example:8443/api/messages", bound))
	r.Host = "API.example:8443"
	dec := d.az.Decide(context.Background(), r)
	require.Equal(t, Allow, dec.Outcome, "%v %s", dec.Reason, dec.Detail)
	assert.Equal(t, "https://api.example:8443/api/messages", d.az.requestURI(r, must(reqhost.Parse(r.Host))))
}
