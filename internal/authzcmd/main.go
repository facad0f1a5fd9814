// Command authz is the Envoy external-authorization service: it verifies OAuth 2.0 / OIDC JWT
// access tokens (Okta's and others') on Envoy's gRPC Check, on an HTTP decision API for nginx,
// Traefik and Envoy's http_service, and serves health on an admin port.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/internal/probe"
	"github.com/platformauth/envoy-okta-authz/internal/tracing"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "healthcheck" {
		// For distroless containers: `authz healthcheck http://127.0.0.1:9003/readyz`.
		os.Exit(probe.Run(os.Args[2], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "explain" {
		os.Exit(explainMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "proxy-config" {
		os.Exit(proxyConfigMain(os.Args[2:], os.Stdout, os.Stderr))
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
	if tracing.Enabled(os.Getenv) {
		shutdown, err := tracing.Setup(ctx, os.Getenv, "authz")
		if err != nil {
			fmt.Fprintf(os.Stderr, "authz: %v\n", err)
			os.Exit(2)
		}
		log.Info("tracing: exporting spans over OTLP as OTEL_* configures")
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = shutdown(sctx)
		}()
	}
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

// explainMain runs `authz explain [flags] [TOKEN|-]`: the service's flags (and policy), plus the
// request to explain. The token comes from the argument, or standard input.
func explainMain(args []string) int {
	var req explainRequest
	c, rest, err := parseArgs("authz explain", args, os.Getenv, os.Stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Method, "method", "GET", "request method")
		fs.StringVar(&req.Path, "path", "/", "request path (with query string, as Envoy sends it)")
		fs.StringVar(&req.Host, "host", "", "request host")
		fs.StringVar(&req.RoutePolicy, "route-policy", "", "Envoy context_extensions policy of the route")
		fs.StringVar(&req.URL, "url", "", "the request's URL (scheme, host, path and query at once; overrides --path and --host): what a DPoP proof's htu names")
		fs.StringVar(&req.DPoP, "dpop", "", "a DPoP proof: the token is presented with the DPoP scheme and this proof")
		fs.StringVar(&req.ClientCert, "client-cert", "", "a PEM file: the client certificate of the request's mutual TLS (certificate-bound tokens)")
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "authz explain: invalid configuration:\n%v\n", err)
		return 2
	}
	if c.Dev {
		fmt.Fprintln(os.Stderr, "authz explain: --dev is not supported; point --issuer at a running dev issuer")
		return 2
	}
	if err := req.resolve(); err != nil {
		fmt.Fprintf(os.Stderr, "authz explain: %v\n", err)
		return 2
	}
	var token string
	switch {
	case len(rest) > 1:
		fmt.Fprintln(os.Stderr, "authz explain: give one token (or - for standard input)")
		return 2
	case len(rest) == 1 && rest[0] != "-":
		token = rest[0]
	default:
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			fmt.Fprintf(os.Stderr, "authz explain: %v\n", err)
			return 2
		}
		token = string(b)
	}
	return explain(context.Background(), c, token, req, os.Stdout)
}
