// Package devidptest starts a dev issuer on a free loopback port for tests.
package devidptest

import (
	"net/http/httptest"
	"testing"

	"github.com/platformauth/envoy-okta-authz/devidp"
)

// Start serves a dev issuer at http://127.0.0.1:PORT/oauth2/default until the test ends.
// cfg.Issuer is filled in; a client "test-client" with secret "test-secret" and the scopes
// messages:read and messages:write is added when cfg has no clients.
func Start(t testing.TB, cfg devidp.Config) (*devidp.Server, *httptest.Server) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	cfg.Issuer = "http://" + ts.Listener.Addr().String() + "/oauth2/default"
	if cfg.Clients == nil {
		cfg.Clients = map[string]devidp.Client{
			"test-client": {Secret: "test-secret", Scopes: []string{"messages:read", "messages:write"}},
		}
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		t.Fatalf("devidp: %v", err)
	}
	ts.Config.Handler = idp.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return idp, ts
}
