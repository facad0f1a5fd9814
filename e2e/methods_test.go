package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestNginxMethodOverrides: through the shipped nginx, a GET that asks the upstream to run it as
// a DELETE (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, ?_method=) is judged as a
// DELETE too: a reader's token is refused. nginx passes the client's headers to its
// auth_request subrequest. (The demo API serves only GET: the status shows the decision.)
func TestNginxMethodOverrides(t *testing.T) {
	s := startStack(t, "testdata/methods-policy.yaml")
	addr := host(startNginx(t, s))
	bearer := "Authorization: Bearer " + s.token(t, "messages:read")
	for _, tc := range []struct {
		name, line string
		headers    []string
		want       int
	}{
		{"plain GET", "GET /api/messages HTTP/1.1", nil, 200},
		{"X-HTTP-Method-Override", "GET /api/messages HTTP/1.1", []string{"X-HTTP-Method-Override: DELETE"}, 403},
		{"X-HTTP-Method", "GET /api/messages HTTP/1.1", []string{"X-HTTP-Method: delete"}, 403},
		{"X-Method-Override", "GET /api/messages HTTP/1.1", []string{"X-Method-Override: PUT"}, 403},
		{"_method in the query", "GET /api/messages?_method=DELETE HTTP/1.1", nil, 403},
		{"override to GET", "GET /api/messages HTTP/1.1", []string{"X-HTTP-Method-Override: GET"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := append([]string{"Host: api.example", bearer}, tc.headers...)
			assert.Equal(t, tc.want, rawLines(t, addr, tc.line, headers...), "%s %v", tc.line, tc.headers)
		})
	}
}
