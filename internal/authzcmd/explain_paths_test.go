package authzcmd

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/policy"
)

// TestExplainPrintsEveryReading: explain shows the canonical path and each reading the decision
// judges, with how it was read and the rule it selects.
func TestExplainPrintsEveryReading(t *testing.T) {
	p, err := policy.Load([]byte(`
rules:
  - {name: admin, match: {path: /admin}, require: {scopes: [admin]}}
  - {name: keys, match: {path: /api/keys}, require: {scopes: [keys:read]}}
  - {name: favicon, match: {path: /favicon.ico}, public: true}
`), nil)
	require.NoError(t, err)
	tests := []struct{ path, want string }{
		{"/adm\u0130n", "\nPath:\n" +
			"  canonical  /adm%C4%B0n\n" +
			"  judged as GET /adm%C4%B0n → rule default\n" +
			"  read as   GET /admin → rule admin  (case-folded)\n"},
		{"/api/\u212Aeys.json", "\nPath:\n" +
			"  canonical  /api/%E2%84%AAeys.json\n" +
			"  judged as GET /api/%E2%84%AAeys.json → rule default\n" +
			"  read as   GET /api/keys.json → rule default  (case-folded)\n" +
			"  read as   GET /api/keys → rule keys  (case-folded, without format suffix)\n"},
		{"/admin.json", "\nPath:\n" +
			"  canonical  /admin.json\n" +
			"  judged as GET /admin.json → rule default\n" +
			"  read as   GET /admin → rule admin  (without format suffix)\n"},
		{"/favicon.ico", "\nPath:\n" +
			"  canonical  /favicon.ico\n" +
			"  judged as GET /favicon.ico → rule favicon\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var out bytes.Buffer
			printReadings(&out, p, &authz.Request{Method: "GET", Path: tt.path})
			assert.Equal(t, tt.want, out.String())
		})
	}
}
