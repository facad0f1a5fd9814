package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawLines sends a request written line by line (a request line of any form, headers as given,
// Host included or not) and returns the status.
func rawLines(t *testing.T, addr, requestLine string, headers ...string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := requestLine + "\r\n" + strings.Join(append(headers, "Connection: close"), "\r\n") + "\r\n\r\n"
	_, err = c.Write([]byte(msg))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestNginxJudgesTheHostItRoutes: through the shipped nginx, a hosts rule judges the host nginx
// routes the request to. nginx routes on the Host header up to its first ":" and on the request
// line's host for an absolute-form request; both used to let a reader's token past the admin
// host's rule (Host: admin.example.com:1:2, or GET http://admin.example.com/… with Host:
// public.example.com).
func TestNginxJudgesTheHostItRoutes(t *testing.T) {
	s := startStack(t, "testdata/hosts-policy.yaml")
	addr := host(startNginx(t, s))
	bearer := "Authorization: Bearer " + s.token(t, "messages:read")
	for _, tc := range []struct {
		name, line string
		headers    []string
		want       int
	}{
		{"public host", "GET /api/messages HTTP/1.1", []string{"Host: public.example.com", bearer}, 200},
		{"admin host", "GET /api/messages HTTP/1.1", []string{"Host: admin.example.com", bearer}, 403},
		{"admin host, port and trailing dot", "GET /api/messages HTTP/1.1", []string{"Host: Admin.Example.com.:8080", bearer}, 403},
		{"port that is not digits", "GET /api/messages HTTP/1.1", []string{"Host: admin.example.com:1:2", bearer}, 400},
		{"empty port", "GET /api/messages HTTP/1.1", []string{"Host: admin.example.com:", bearer}, 400},
		{"question mark", "GET /api/messages HTTP/1.1", []string{"Host: admin.example.com?", bearer}, 400},
		{"absolute form naming another host", "GET http://admin.example.com/api/messages HTTP/1.1", []string{"Host: public.example.com", bearer}, 400},
		{"absolute form naming the same host", "GET http://admin.example.com/api/messages HTTP/1.1", []string{"Host: admin.example.com", bearer}, 403},
		{"absolute form, public", "GET http://public.example.com:8080/api/messages HTTP/1.1", []string{"Host: public.example.com:8080", bearer}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, rawLines(t, addr, tc.line, tc.headers...), "%s %v", tc.line, tc.headers)
		})
	}

	t.Run("the service refuses such a host itself", func(t *testing.T) {
		// As Traefik or Envoy's http_service would ask: the service is the second line.
		for host, want := range map[string]int{"admin.example.com": 403, "admin.example.com:1:2": 400, "admin.example.com?": 400} {
			got := rawLines(t, strings.TrimPrefix(s.httpURL, "http://"), "GET /authz HTTP/1.1",
				"Host: authz", bearer, "X-Original-URI: /api/messages", "X-Original-Method: GET", "X-Original-Host: "+host)
			assert.Equal(t, want, got, fmt.Sprintf("X-Original-Host %q", host))
		}
	})
}
