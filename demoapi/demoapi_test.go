package demoapi

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var now = func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }

func serve(t *testing.T, path string, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	Handler(now).ServeHTTP(rec, req)
	return rec
}

func TestProtectedRoutesNeedIdentity(t *testing.T) {
	for _, p := range []string{"/api/messages", "/secure", "/api/settings", "/api/events"} {
		rec := serve(t, p, nil)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, p)
	}
	assert.Equal(t, http.StatusOK, serve(t, "/healthz", nil).Code)
	assert.Equal(t, http.StatusNotFound, serve(t, "/nope", map[string]string{headerSubject: "x"}).Code)
}

func TestMessages(t *testing.T) {
	rec := serve(t, "/api/messages", map[string]string{headerSubject: "0oa-client"})
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body struct{ Messages []Message }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Len(t, body.Messages, 2)
	assert.Equal(t, "I am a robot.", body.Messages[0].Text)
	assert.Equal(t, "Hello, world!", body.Messages[1].Text)
	assert.Equal(t, now(), body.Messages[1].Date)
}

func TestSecureEchoesIdentity(t *testing.T) {
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"0oa-client","jti":"AT.1","scp":["messages:read"]}`))
	rec := serve(t, "/secure", map[string]string{
		headerSubject: "0oa-client", headerClientID: "0oa-client", headerUserID: "00u-1",
		headerScopes: "messages:read profile", headerClaims: claims,
	})
	require.Equal(t, http.StatusOK, rec.Code)
	var id Identity
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &id))
	assert.Equal(t, "0oa-client", id.Subject)
	assert.Equal(t, "00u-1", id.UserID)
	assert.Equal(t, []string{"messages:read", "profile"}, id.Scopes)
	assert.Equal(t, "AT.1", id.Claims["jti"])
}

func TestEventsSaysWhatArrived(t *testing.T) {
	rec := serve(t, "/api/events?room=1", map[string]string{headerSubject: "00u-1", "Cookie": "theme=dark"})
	require.Equal(t, http.StatusOK, rec.Code)
	var ev Event
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ev))
	assert.Equal(t, Event{Subject: "00u-1", Target: "/api/events?room=1", Credentials: []string{"Cookie"}}, ev)

	srv := httptest.NewServer(Handler(now))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("GET /api/events?room=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Authz-Subject: 00u-1\r\n\r\n"))
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-Websocket-Accept"), "RFC 6455's example")
	frame, err := io.ReadAll(br) // the frames follow the handshake; the server then closes
	require.NoError(t, err)
	require.Greater(t, len(frame), 4)
	assert.Equal(t, byte(0x81), frame[0], "a text frame")
	require.NoError(t, json.Unmarshal(frame[2:2+int(frame[1])], &ev))
	assert.Equal(t, Event{Subject: "00u-1", Target: "/api/events?room=1", WebSocket: true, Credentials: []string{}}, ev)
	assert.Equal(t, []byte{0x88, 0x00}, frame[2+int(frame[1]):], "then a close frame")
}
