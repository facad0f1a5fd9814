package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/platformauth/envoy-okta-authz/demoapi"
)

// TestGRPCCheckThenDemoAPI plays Envoy's part: get a token from the dev issuer's token endpoint,
// ask Check over real gRPC, apply the CheckResponse's header mutations to the request as Envoy
// does, and forward it to the demo API, whose /secure echoes the verified subject.
func TestGRPCCheckThenDemoAPI(t *testing.T) {
	s := startStack(t, "")
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	token := s.token(t, "messages:read")
	req := httptest.NewRequest("GET", "/secure", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Authz-Subject", "spoofed-admin")
	req.Header.Set("X-Authz-User-Id", "spoofed-user")

	// Envoy sends lower-case header names, pseudo-headers included.
	lower := map[string]string{":path": "/secure", ":method": "GET"}
	for k := range req.Header {
		lower[strings.ToLower(k)] = req.Header.Get(k)
	}
	resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/secure", Headers: lower,
		}},
		ContextExtensions: map[string]string{"policy": "secure"},
	}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())

	// Envoy: overwrite the headers the service sets, remove those it lists.
	ok := resp.GetOkResponse()
	for _, h := range ok.GetHeaders() {
		req.Header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	for _, name := range ok.GetHeadersToRemove() {
		req.Header.Del(name)
	}
	rec := httptest.NewRecorder()
	s.api.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	var id demoapi.Identity
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &id))
	assert.Equal(t, "test-client", id.Subject, "the API sees the verified subject, not the spoofed one")
	assert.Empty(t, id.UserID, "a spoofed user id is removed")
	assert.Equal(t, []string{"messages:read"}, id.Scopes)
	assert.NotEmpty(t, id.Claims["jti"])
}
