package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/devidp"
)

// Dev-mode client, as in the compose stack's dev issuer.
const (
	devClientID     = "demo-client"
	devClientSecret = "demo-secret"
)

// startDev starts an in-process dev issuer for --dev, points c at it and prints a ready token
// with commands to try it. The issuer stops when ctx ends.
func startDev(ctx context.Context, c *config, out io.Writer, log *slog.Logger) error {
	l, err := net.Listen("tcp", c.DevAddr)
	if err != nil {
		return fmt.Errorf("--dev-addr: %w", err)
	}
	idp, err := devidp.New(devidp.Config{
		Issuer:   "http://" + l.Addr().String() + "/oauth2/default",
		Audience: c.Audiences[0],
		Clients: map[string]devidp.Client{
			devClientID: {Secret: devClientSecret, Scopes: []string{"messages:read", "messages:write"}},
		},
	})
	if err != nil {
		l.Close()
		return err
	}
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })

	c.Issuer = idp.Issuer()
	c.AllowHTTPIssuer = true
	if c.HTTPSource == authz.SourceAuto {
		// No proxy in front: the HTTP decision API judges the request it receives, so that
		// curl can ask it directly.
		c.HTTPSource = authz.SourceEnvoy
	}
	tok, err := idp.Mint(devidp.TokenRequest{ClientID: devClientID, Scopes: []string{"messages:read"}})
	if err != nil {
		return err
	}
	log.Warn("DEVELOPMENT MODE: an in-process dev issuer signs tokens; never use --dev in production", "issuer", c.Issuer)
	httpPort := portOf(c.HTTPAddr)
	fmt.Fprintf(out, `
Development mode: dev issuer at %[1]s (client %[2]s / %[3]s)

A token for client %[2]s with scope messages:read, valid for an hour:

export TOKEN=%[4]s

Ask the HTTP decision API (the same decisions Envoy gets over gRPC); in --dev it judges the
request it receives, as behind Envoy's http_service (--http-request-headers envoy):
  curl -i localhost:%[5]s/api/messages                                  # 401, no token
  curl -i -H "Authorization: Bearer $TOKEN" localhost:%[5]s/api/messages # 200 with x-authz-* headers

A fresh token:
  curl -s -u %[2]s:%[3]s -d grant_type=client_credentials -d scope=messages:read %[1]s/v1/token

`, c.Issuer, devClientID, devClientSecret, tok, httpPort)
	return nil
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return strings.TrimPrefix(addr, ":")
	}
	return port
}
