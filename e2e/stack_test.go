// Package e2e runs the pieces together on loopback: the dev issuer, the authz service's front
// ends, the demo API and (in nginx_test.go) a real nginx enforcing the decisions.
package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/demoapi"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/grpcapi"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// stack is a running set of the services, each on its own loopback port.
type stack struct {
	idp      *devidp.Server
	idpURL   string
	grpcAddr string // authz gRPC (ext_authz)
	// The authz HTTP decision API, configured for each proxy: nginx's X-Original-* headers,
	// Traefik's X-Forwarded-*, Envoy's http_service (path prefix /authz).
	httpURL, httpTraefikURL, httpEnvoyURL string
	apiURL                                string // demo API
	api                                   http.Handler
	// served, when set, sees every request the demo API served, after routing (r.Pattern
	// names the handler it chose) and the status it answered (a redirect runs no handler):
	// the tests' oracle of what reached a protected handler.
	served atomic.Pointer[func(r *http.Request, status int)]
}

// startStack starts the services; with a policy file, the authz service enforces it.
func startStack(t *testing.T, policyFile string) *stack {
	return startStackKeys(t, policyFile, true)
}

// startStackKeys is startStack; without loadKeys the authz service never gets its key set (the
// issuer's key URL points at a closed port), as during an issuer outage at start-up.
func startStackKeys(t *testing.T, policyFile string, loadKeys bool) *stack {
	t.Helper()
	idp, idpSrv := devidptest.Start(t, devidp.Config{})
	opts := jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true}
	if !loadKeys {
		opts.JWKSURL = "http://127.0.0.1:1/keys"
	}
	keys, err := jwks.New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if loadKeys {
		go keys.Run(ctx)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		require.NoError(t, keys.WaitLoaded(wctx))
	}

	v, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{
		{URL: idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: keys},
	}, Leeway: 2 * time.Minute})
	require.NoError(t, err)
	var pol *policy.Policy
	if policyFile != "" {
		data, err := os.ReadFile(policyFile)
		require.NoError(t, err)
		pol, err = policy.Load(data, []string{"default"})
		require.NoError(t, err)
	}
	// DPoP on, as the service runs by default: proofs remembered in memory.
	proofs, err := dpop.New(dpop.Options{Leeway: 2 * time.Minute})
	require.NoError(t, err)
	az := authz.NewAuthorizer(v, authz.Options{Realm: "api", Policy: pol, DPoP: proofs})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	check := grpcapi.New(az)
	gs := grpc.NewServer(check.ServerOptions()...)
	authv3.RegisterAuthorizationServer(gs, check)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)

	decisionAPI := func(opts httpapi.Options) string {
		srv := httptest.NewServer(httpapi.New(az, opts))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	s := &stack{idp: idp, idpURL: idpSrv.URL, grpcAddr: l.Addr().String(),
		httpURL:        decisionAPI(httpapi.Options{Source: httpapi.SourceNginx}),
		httpTraefikURL: decisionAPI(httpapi.Options{Source: httpapi.SourceTraefik}),
		httpEnvoyURL:   decisionAPI(httpapi.Options{Source: httpapi.SourceEnvoy, PathPrefix: "/authz"}),
	}
	api := demoapi.Handler(time.Now)
	s.api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		api.ServeHTTP(sw, r) // the ServeMux sets r.Pattern
		if fn := s.served.Load(); fn != nil {
			(*fn)(r, sw.status)
		}
	})
	apiSrv := httptest.NewServer(s.api)
	t.Cleanup(apiSrv.Close)
	s.apiURL = apiSrv.URL
	return s
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the WebSocket route hijacks it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// token gets a token from the dev issuer's real token endpoint.
func (s *stack) token(t *testing.T, scope string) string {
	t.Helper()
	tok, err := devidp.RequestToken(context.Background(), http.DefaultClient, s.idp.Issuer(), "test-client", "test-secret", scope)
	require.NoError(t, err)
	return tok
}

// mint signs a token directly, for claims the token endpoint would never issue.
func (s *stack) mint(t *testing.T, extra map[string]any) string {
	t.Helper()
	tok, err := s.idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}, Extra: extra})
	require.NoError(t, err)
	return tok
}
