package authzcmd

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

// TestExplainConditionsAndStepUp: explain prints every expression's value under each reading it
// depends on, the failing check with its detail, the step-up challenge, and reads a token from
// the query and headers from --header.
func TestExplainConditionsAndStepUp(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, `rules:
  - name: team-admin
    match: { path_prefix: /admin, cel: request.host.endsWith(".api.example") }
    require:
      cel:
        - claims.groups.exists(g, g.startsWith("team-"))
        - request.headers[?"x-tenant"].orValue("") == claims.tenant && request.path.startsWith("/admin")
      acr: [urn:okta:loa:2fa:any]
      max_age: 10m
  - name: ws
    match: { path: /ws }
    credentials: ["query:access_token"]
`)
	c, err := parseConfig([]string{"--issuer", idp.Issuer(), "--allow-http-issuer", "--policy", path}, env(nil), io.Discard)
	require.NoError(t, err)
	mint := func(extra map[string]any) string {
		tok, err := idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}, Extra: extra})
		require.NoError(t, err)
		return tok
	}
	member := map[string]any{"groups": []string{"team-blue"}, "tenant": "acme"}

	var out bytes.Buffer
	req := explainRequest{Method: "GET", Scheme: "https", Host: "acme.api.example", Path: "/Admin/x", Headers: headerFlags{}}
	require.NoError(t, req.Headers.Set("X-Tenant: acme"))
	code := explain(context.Background(), c, mint(member), req, &out)
	assert.Equal(t, 1, code)
	text := out.String()
	for _, want := range []string{
		// Reading neither the method nor the path: once, under the canonical reading.
		"  rule team-admin, match.cel[0] under GET /Admin/x\n    request.host.endsWith(\".api.example\")\n    = true\n",
		"  rule team-admin, require.cel[0] under GET /Admin/x\n    claims.groups.exists(g, g.startsWith(\"team-\"))\n    = true\n",
		// Reading the path: under the reading that selects the rule (case-folded).
		"  rule team-admin, require.cel[1] under GET /admin/x\n",
		"pass         rule: conditions (require.cel)",
		"FAIL         rule: step-up (acr, auth_time within max_age)",
		`acr "" is not one of ["urn:okta:loa:2fa:any"]`,
		`error="insufficient_user_authentication"`, `acr_values="urn:okta:loa:2fa:any", max_age=600`,
		"Decision: insufficient_user_authentication, HTTP 401",
	} {
		assert.Contains(t, text, want)
	}

	out.Reset()
	strong := mint(map[string]any{"groups": []string{"team-blue"}, "tenant": "acme", "acr": "urn:okta:loa:2fa:any", "auth_time": time.Now().Unix()})
	assert.Equal(t, 0, explain(context.Background(), c, strong, req, &out), out.String())

	out.Reset()
	req.Headers = headerFlags{}
	code = explain(context.Background(), c, strong, req, &out)
	assert.Equal(t, 1, code)
	assert.Contains(t, out.String(), "FAIL         rule: conditions (require.cel)")

	out.Reset()
	code = explain(context.Background(), c, "", explainRequest{Method: "GET", Path: "/ws?access_token=" + mint(nil), Headers: headerFlags{}}, &out)
	assert.Equal(t, 0, code, out.String())
	assert.Contains(t, out.String(), "upstream loses: authorization, dpop")
}
