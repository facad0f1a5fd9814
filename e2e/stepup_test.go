package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/demoapi"
	"github.com/platformauth/envoy-okta-authz/devidp"
)

// TestNginxStepUpChallenge: the demo policy's settings route asks for a second factor in the
// last 10 minutes; through the shipped nginx the client gets the 401 with the service's RFC 9470
// challenge (nginx passes a 401's WWW-Authenticate by itself), and after a fresh sign-in the
// retry passes.
func TestNginxStepUpChallenge(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	base := startNginx(t, s)
	get := func(tok string) *http.Response {
		resp, err := rawRequest(host(base), "GET", "/api/settings", http.Header{"Authorization": {"Bearer " + tok}})
		require.NoError(t, err)
		return resp
	}
	resp := get(s.token(t, "messages:read"))
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, []string{`Bearer realm="api", error="insufficient_user_authentication", error_description="A stronger authentication is required for this resource", acr_values="urn:okta:loa:2fa:any urn:okta:loa:2fa:any:ifpossible", max_age=600`},
		resp.Header.Values("WWW-Authenticate"))

	stale, err := devidp.RequestTokenWith(t.Context(), http.DefaultClient, s.idp.Issuer(), "test-client", "test-secret",
		devidp.TokenOptions{ACR: "urn:okta:loa:2fa:any", AuthTime: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	resp = get(stale)
	assert.Equal(t, 401, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error_description="A more recent authentication is required for this resource"`)

	fresh, err := devidp.RequestTokenWith(t.Context(), http.DefaultClient, s.idp.Issuer(), "test-client", "test-secret",
		devidp.TokenOptions{ACR: "urn:okta:loa:2fa:any", AuthTime: time.Now()})
	require.NoError(t, err)
	assert.Equal(t, 200, get(fresh).StatusCode, "the retry after a fresh second factor")
}

// TestNginxWebSocketTokenFromTheQuery: a browser's WebSocket carries its token in the query;
// through the shipped nginx the handshake passes, the API never sees the token (nor the
// Authorization or any credential header), and neither nginx's access log nor the service's
// log holds it.
func TestNginxWebSocketTokenFromTheQuery(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	apiSrv := s.apiURL
	base, dir := startNginxIn(t, s, host(apiSrv), nil)
	tok := s.token(t, "messages:read")

	conn, err := net.DialTimeout("tcp", host(base), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /api/events?room=7&access_token="+tok+" HTTP/1.1\r\nHost: api.example\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Origin: http://app.example\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "the handshake passed nginx and the service")
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-Websocket-Accept"))
	head := make([]byte, 2)
	_, err = io.ReadFull(br, head)
	require.NoError(t, err)
	require.Equal(t, byte(0x81), head[0], "a text frame")
	n := int(head[1])
	if n == 126 {
		ext := make([]byte, 2)
		_, err = io.ReadFull(br, ext)
		require.NoError(t, err)
		n = int(ext[0])<<8 | int(ext[1])
	}
	payload := make([]byte, n)
	_, err = io.ReadFull(br, payload)
	require.NoError(t, err)
	var ev demoapi.Event
	require.NoError(t, json.Unmarshal(payload, &ev))
	assert.Equal(t, demoapi.Event{Subject: "test-client", Target: "/api/events?room=7", WebSocket: true, Credentials: []string{}}, ev,
		"the API got the target without the token, and no credential header")

	// A plain request with the token in the query and in the Authorization header: two places.
	resp, err = rawRequest(host(base), "GET", "/api/events?access_token="+tok, http.Header{"Authorization": {"Bearer " + tok}})
	require.NoError(t, err)
	assert.Equal(t, 400, resp.StatusCode)
	// Only the events route reads the query.
	resp, err = rawRequest(host(base), "GET", "/api/messages?access_token="+tok, nil)
	require.NoError(t, err)
	assert.Equal(t, 401, resp.StatusCode)

	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		return strings.Count(string(b), "/api/") >= 3
	}, 5*time.Second, 20*time.Millisecond, "nginx logged the requests")
	for _, f := range []string{"access.log", "error.log"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.NotContains(t, string(b), tok, "nginx's %s holds the token", f)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
	assert.Contains(t, string(b), `"GET /api/events HTTP/1.1" 101`, "the access log has the path, without its query")
}

// TestNginxPassesNoOtherUpgrade: the shipped nginx passes a WebSocket upgrade and no other —
// an API that accepted h2c (or any upgrade) would turn the connection into a tunnel whose
// later requests nginx never sees nor asks the service about (h2c smuggling).
func TestNginxPassesNoOtherUpgrade(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	base := startNginxFor(t, s, host(s.apiURL))
	tok := s.token(t, "messages:read")
	seen := make(chan http.Header, 1)
	fn := func(r *http.Request, _ int) { seen <- r.Header.Clone() }
	s.served.Store(&fn)
	for _, upgrade := range []string{"h2c", "H2C", "websocket, h2c", "h2c, websocket", "TLS/1.2", "websocketx"} {
		conn, err := net.DialTimeout("tcp", host(base), 5*time.Second)
		require.NoError(t, err)
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = io.WriteString(conn, "GET /api/messages HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer "+tok+"\r\n"+
			"Upgrade: "+upgrade+"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		conn.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, upgrade)
		h := <-seen
		assert.Empty(t, h.Values("Upgrade"), "%q reached the API", upgrade)
		assert.NotContains(t, strings.ToLower(strings.Join(h.Values("Connection"), ",")), "upgrade", upgrade)
	}
}
