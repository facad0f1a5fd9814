// Package authzcmd is the authz command (cmd/authz is its thin main): the Envoy
// external-authorization service, which verifies OAuth 2.0 / OIDC JWT access tokens (Okta's and
// others') on Envoy's gRPC Check, on an HTTP decision API for nginx, Traefik and Envoy's
// http_service, and serves health on an admin port; and its subcommands. The local dev stack
// (internal/devstack) runs it in process, exactly as the binary does.
package authzcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/platformauth/envoy-okta-authz/internal/probe"
	"github.com/platformauth/envoy-okta-authz/internal/tracing"
	"github.com/platformauth/envoy-okta-authz/internal/version"
)

// Main runs the authz command with args (without the program name) and returns its exit code:
// 0 done, 1 failed while running, 2 invalid usage or configuration. The service runs until ctx
// ends.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			// For distroless containers: `authz healthcheck http://127.0.0.1:9003/readyz`.
			if len(args) != 2 || isHelp(args[1]) {
				fmt.Fprint(stdoutIfHelp(args, stdout, stderr), healthcheckUsage)
				return exitFor(args)
			}
			return probe.Run(args[1], stderr)
		case "explain":
			return explainMain(ctx, args[1:], getenv, stdout, stderr)
		case "proxy-config":
			return proxyConfigMain(args[1:], getenv, stdout, stderr)
		case "version", "--version", "-version":
			fmt.Fprintln(stdout, version.String("authz"))
			return 0
		case "help":
			return helpMain(args[1:], getenv, stdout, stderr)
		}
	}
	c, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "authz: invalid configuration:\n%v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	for _, w := range c.Warnings {
		log.Warn(w)
	}
	if c.CheckConfig {
		fmt.Fprintln(stderr, "authz: configuration is valid")
		return 0
	}
	if tracing.Enabled(getenv) {
		shutdown, err := tracing.Setup(ctx, getenv, "authz")
		if err != nil {
			fmt.Fprintf(stderr, "authz: %v\n", err)
			return 2
		}
		log.Info("tracing: exporting spans over OTLP as OTEL_* configures")
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = shutdown(sctx)
		}()
	}
	if c.Dev {
		if err := startDev(ctx, c, stdout, log); err != nil {
			fmt.Fprintf(stderr, "authz: %v\n", err)
			return 1
		}
	}
	ls, err := listen(c)
	if err != nil {
		fmt.Fprintf(stderr, "authz: %v\n", err)
		return 1
	}
	if err := run(ctx, c, ls, log); err != nil {
		fmt.Fprintf(stderr, "authz: %v\n", err)
		return 1
	}
	return 0
}

const healthcheckUsage = `Usage: authz healthcheck URL

Exits 0 when URL answers 2xx within 3 seconds, 1 otherwise: a container health check that
needs no shell or curl (e.g. authz healthcheck http://127.0.0.1:9003/readyz).
`

// helpMain runs `authz help [COMMAND]`.
func helpMain(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		_, _ = parseConfig([]string{"--help"}, getenv, stdout)
	case args[0] == "explain":
		return explainMain(context.Background(), []string{"--help"}, getenv, stdout, stderr)
	case args[0] == "proxy-config":
		return proxyConfigMain([]string{"--help"}, getenv, stdout, stderr)
	case args[0] == "healthcheck":
		fmt.Fprint(stdout, healthcheckUsage)
	case args[0] == "version":
		fmt.Fprintln(stdout, "Usage: authz version\n\nPrints the module version, VCS revision and Go version the binary was built from.")
	default:
		fmt.Fprintf(stderr, "authz help: no command %q; the commands are explain, proxy-config, healthcheck and version\n", args[0])
		return 2
	}
	return 0
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// stdoutIfHelp: help that was asked for goes to stdout, usage after a mistake to stderr.
func stdoutIfHelp(args []string, stdout, stderr io.Writer) io.Writer {
	if len(args) == 2 && isHelp(args[1]) {
		return stdout
	}
	return stderr
}

func exitFor(args []string) int {
	if len(args) == 2 && isHelp(args[1]) {
		return 0
	}
	return 2
}

// explainMain runs `authz explain [flags] [TOKEN|-]`: the service's flags (and policy), plus the
// request to explain. The token comes from the argument, or standard input.
func explainMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	req := explainRequest{Headers: headerFlags{}}
	c, rest, err := parseArgs("authz explain", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Method, "method", "GET", "request method")
		fs.StringVar(&req.Path, "path", "/", "request path (with query string, as Envoy sends it)")
		fs.StringVar(&req.Host, "host", "", "request host")
		fs.StringVar(&req.RoutePolicy, "route-policy", "", "Envoy context_extensions policy of the route")
		fs.StringVar(&req.URL, "url", "", "the request's URL (scheme, host, path and query at once; overrides --path and --host): what a DPoP proof's htu names")
		fs.StringVar(&req.DPoP, "dpop", "", "a DPoP proof: the token is presented with the DPoP scheme and this proof")
		fs.StringVar(&req.ClientCert, "client-cert", "", "a PEM file: the client certificate of the request's mutual TLS (certificate-bound tokens)")
		fs.Var(req.Headers, "header", "a request header, \"Name: value\" (repeatable): what conditions read (request.headers), a cookie, a token in a header of its own")
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "authz explain: invalid configuration:\n%v\n", err)
		return 2
	}
	if err := req.resolve(); err != nil {
		fmt.Fprintf(stderr, "authz explain: %v\n", err)
		return 2
	}
	var token string
	switch {
	case len(rest) > 1:
		fmt.Fprintln(stderr, "authz explain: give one token (or - for standard input)")
		return 2
	case len(rest) == 1 && rest[0] != "-":
		token = rest[0]
	default:
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			fmt.Fprintf(stderr, "authz explain: %v\n", err)
			return 2
		}
		token = string(b)
	}
	return explain(ctx, c, token, req, stdout)
}
