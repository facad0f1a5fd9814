// Command authz is the Envoy external-authorization service: it verifies OAuth 2.0 / OIDC JWT
// access tokens (Okta's and others') on Envoy's gRPC Check, on an HTTP decision API for nginx,
// Traefik and Envoy's http_service, and serves health on an admin port.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/platformauth/envoy-okta-authz/internal/probe"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "healthcheck" {
		// For distroless containers: `authz healthcheck http://127.0.0.1:9003/readyz`.
		os.Exit(probe.Run(os.Args[2], os.Stderr))
	}
	c, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "authz: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	for _, w := range c.Warnings {
		log.Warn(w)
	}
	if c.CheckConfig {
		fmt.Fprintln(os.Stderr, "authz: configuration is valid")
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.Dev {
		if err := startDev(ctx, c, os.Stdout, log); err != nil {
			fmt.Fprintf(os.Stderr, "authz: %v\n", err)
			os.Exit(1)
		}
	}
	ls, err := listen(c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "authz: %v\n", err)
		os.Exit(1)
	}
	if err := run(ctx, c, ls, log); err != nil {
		fmt.Fprintf(os.Stderr, "authz: %v\n", err)
		os.Exit(1)
	}
}
