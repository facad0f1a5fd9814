package authzcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/internal/tlsfiles/tlstest"
)

// TestMutualTLSListeners runs the service with --tls-cert, --tls-key and --client-ca: gRPC and
// the HTTP decision API answer clients with a certificate from the CA, and refuse others.
func TestMutualTLSListeners(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	pki := tlstest.New(t)
	ls, stop := startService(t, slog.New(slog.DiscardHandler), "--issuer", idp.Issuer(), "--allow-http-issuer",
		"--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile, "--client-ca", pki.CAFile)
	defer stop()
	ctx := context.Background()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + ls.admin.Addr().String() + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, 10*time.Second, 10*time.Millisecond)

	roots := x509.NewCertPool()
	ca, err := os.ReadFile(pki.CAFile)
	require.NoError(t, err)
	roots.AppendCertsFromPEM(ca)
	clientCert, err := tls.LoadX509KeyPair(pki.ClientCertFile, pki.ClientKeyFile)
	require.NoError(t, err)
	withCert := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, ServerName: "localhost"}
	withoutCert := &tls.Config{RootCAs: roots, ServerName: "localhost"}

	token, err := idp.Mint(devidp.TokenRequest{ClientID: "test-client"})
	require.NoError(t, err)
	check := func(cfg *tls.Config) (*authv3.CheckResponse, error) {
		conn, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		require.NoError(t, err)
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return authv3.NewAuthorizationClient(conn).Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/messages", Headers: map[string]string{"authorization": "Bearer " + token}}}}})
	}
	resp, err := check(withCert)
	require.NoError(t, err)
	assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
	_, err = check(withoutCert)
	assert.Error(t, err, "a gRPC client without a certificate is refused")

	httpGet := func(cfg *tls.Config) (*http.Response, error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		req, _ := http.NewRequest("GET", "https://"+ls.http.Addr().String()+"/api/messages", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Forwarded-Uri", "/api/messages") // as Traefik asks
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Host", "api.example")
		return client.Do(req)
	}
	hresp, err := httpGet(withCert)
	require.NoError(t, err)
	hresp.Body.Close()
	assert.Equal(t, 200, hresp.StatusCode)
	_, err = httpGet(withoutCert)
	assert.Error(t, err, "an HTTP client without a certificate is refused")
}

func TestTLSFlagsGoTogether(t *testing.T) {
	_, err := parseConfig([]string{"--issuer", "https://x.example", "--tls-cert", "a.pem", "--client-ca", "ca.pem"}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "--tls-cert and --tls-key go together")
	_, err = parseConfig([]string{"--issuer", "https://x.example", "--client-ca", "ca.pem"}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "--client-ca needs --tls-cert")
}
