// Command authz is the Envoy external-authorization service (package internal/authzcmd): it
// verifies OAuth 2.0 / OIDC JWT access tokens on Envoy's gRPC Check and on an HTTP decision API
// for nginx, Traefik and Envoy's http_service. Run `authz --help` for its flags and commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/platformauth/envoy-okta-authz/internal/authzcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := authzcmd.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
