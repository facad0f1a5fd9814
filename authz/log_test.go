package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDecisionLog checks the fields of a decision line, the modes, and that no token, no
// Authorization header and no cookie is ever logged.
func TestDecisionLog(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, map[string]any{"jti": "AT.logged"})
	req := func(auth string) *Request {
		return &Request{Method: "GET", Host: "api.example", Path: "/api/messages?secret=1", RequestID: "req-1",
			Frontend: "grpc", Authorization: []string{auth}}
	}
	run := func(mode string) []map[string]any {
		var buf bytes.Buffer
		az := NewAuthorizer(e.v, Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), DecisionLog: mode})
		az.Decide(context.Background(), req("Bearer "+tok))
		az.Decide(context.Background(), req("Bearer "+tok[:len(tok)-4]+"AAAA"))
		az.Decide(context.Background(), req("Basic dXNlcjpjb29raWU9c2VjcmV0"))
		out := buf.String()
		assert.NotContains(t, out, tok[:40], "never the token")
		assert.NotContains(t, out, "dXNlcjpjb29raWU9c2VjcmV0", "never the Authorization header")
		assert.NotContains(t, out, "secret=1", "never the query string")
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m))
			lines = append(lines, m)
		}
		return lines
	}

	lines := run(DecisionLogAll)
	require.Len(t, lines, 3)
	allow := lines[0]
	for field, want := range map[string]any{"decision": "allow", "method": "GET", "host": "api.example",
		"path": "/api/messages", "request_id": "req-1", "frontend": "grpc", "sub": "test-client",
		"cid": "test-client", "jti": "AT.logged", "iss": e.idp.Issuer(), "rule": "default"} {
		assert.Equal(t, want, allow[field], field)
	}
	assert.NotEmpty(t, allow["kid"])
	assert.Contains(t, allow, "latency_ms")
	assert.Equal(t, "bad_signature", lines[1]["reason"])
	assert.NotContains(t, lines[1], "sub", "no identity from a token that did not verify")

	assert.Len(t, run(DecisionLogDenials), 2, "default: denials only")
	assert.Empty(t, run(DecisionLogOff))
}
