package authzcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Dev-mode client, as in the compose stack's dev issuer and devidp's defaults (the service
// introspects as this client too), and how long --dev reuses an introspection answer.
const (
	devClientID         = "demo-client"
	devClientSecret     = "demo-secret"
	devIntrospectionTTL = 5 * time.Second
)

// startDev prepares --dev: it starts the dev issuer in process (unless --issuer names a running
// one) and prints tokens with commands to try them. The issuer stops when ctx ends.
func startDev(ctx context.Context, c *config, out io.Writer, log *slog.Logger) error {
	if c.HTTPSource == httpapi.SourceAuto {
		// No proxy in front: the HTTP decision API judges the request it receives, so that
		// curl can ask it directly.
		c.HTTPSource = httpapi.SourceEnvoy
	}
	httpPort := portOf(c.HTTPAddr)
	if c.devExternal {
		log.Warn("DEVELOPMENT MODE: trusting the dev issuer at --issuer over plain http; never use --dev in production", "issuer", c.Issuer)
		fmt.Fprintf(out, `
Development mode, with the dev issuer at %[1]s. Try:
  export TOKEN=$(go run ./cmd/devidp token --issuer %[1]s --scope messages:read)
  curl -i -H "Authorization: Bearer $TOKEN" localhost:%[2]s/api/messages   # 200

`, c.Issuer, httpPort)
		return nil
	}
	cfg := devidp.Config{
		Issuer:   c.Issuer,
		Audience: c.Audiences[0],
		Clients: map[string]devidp.Client{
			devClientID: {Secret: devClientSecret, Scopes: []string{"messages:read", "messages:write"}},
		},
	}
	if c.DevKey != "" {
		key, created, err := devidp.LoadSigningKey(c.DevKey)
		if err != nil {
			return fmt.Errorf("--dev-key: %w", err)
		}
		cfg.SigningKey = key
		if created {
			log.Info("--dev-key: created a signing key; tokens it signs stay valid across restarts", "file", c.DevKey)
		}
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", c.DevAddr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("--dev-addr %s is in use: if a dev issuer runs there (devidp, another authz --dev), use it with --dev --issuer %s; or pick another --dev-addr", c.DevAddr, c.Issuer)
	}
	if err != nil {
		return fmt.Errorf("--dev-addr: %w", err)
	}
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })

	read, err := idp.Mint(devidp.TokenRequest{ClientID: devClientID, Scopes: []string{"messages:read"}})
	if err != nil {
		return err
	}
	opaque, err := idp.MintOpaque(devidp.TokenRequest{ClientID: devClientID, Scopes: []string{"messages:read"}})
	if err != nil {
		return err
	}
	writeOnly, err := idp.Mint(devidp.TokenRequest{ClientID: devClientID, Scopes: []string{"messages:write"}})
	if err != nil {
		return err
	}
	log.Warn("DEVELOPMENT MODE: an in-process dev issuer signs tokens; never use --dev in production", "issuer", c.Issuer)
	policy := "the demo route policy (deploy/policy/demo.yaml: /api/messages needs messages:read)"
	if c.Policy != "" {
		policy = "--policy " + c.Policy
	}
	fmt.Fprintf(out, `
Development mode: dev issuer at %[1]s (client %[2]s / %[3]s), %[6]s.

Tokens for client %[2]s, valid for an hour (with --dev-key FILE they survive restarts):
  export TOKEN=%[4]s          # messages:read
  export TOKEN_WRITE=%[5]s    # messages:write only

Ask the HTTP decision API (the decisions Envoy gets over gRPC); in --dev it judges the request it
receives, as behind Envoy's http_service:
  curl -i localhost:%[7]s/api/messages                                        # 401, no token
  curl -i -H "Authorization: Bearer $TOKEN_WRITE" localhost:%[7]s/api/messages # 403, lacks messages:read
  curl -i -H "Authorization: Bearer $TOKEN" localhost:%[7]s/api/messages       # 200 with x-authz-* headers

%[8]sA fresh token: go run ./cmd/devidp token --issuer %[1]s --scope messages:read (--opaque: opaque)
The whole stack (dev issuer, this service, the demo API and nginx in front): go run ./cmd/devstack

`, c.Issuer, devClientID, devClientSecret, read, writeOnly, policy, httpPort, introspectionGuide(c, opaque))
	return nil
}

// introspectionGuide is the part of the --dev guide that shows revocation and an opaque token,
// when introspection is on.
func introspectionGuide(c *config, opaque string) string {
	in := c.Introspection
	if in == nil || in.Mode == "" || in.Mode == string(token.IntrospectOff) {
		return ""
	}
	ttl := time.Duration(in.CacheTTL)
	return fmt.Sprintf(`Tokens are also introspected (--introspection %[1]s; answers reused for %[2]s): revoke one, and
%[2]s later it is refused (401, token_inactive):
  go run ./cmd/devidp revoke --issuer %[3]s "$TOKEN"
  curl -i -H "Authorization: Bearer $TOKEN" localhost:%[4]s/api/messages       # 401 once the answer expires
An opaque token (not a JWT: only introspection reads it):
  export OPAQUE=%[5]s
  curl -i -H "Authorization: Bearer $OPAQUE" localhost:%[4]s/api/messages      # 200

`, in.Mode, ttl, c.Issuer, portOf(c.HTTPAddr), opaque)
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return strings.TrimPrefix(addr, ":")
	}
	return port
}
