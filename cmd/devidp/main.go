// Command devidp runs the Okta-shaped development issuer (package devidp) on port 9400.
// FOR DEVELOPMENT ONLY: keys live in memory and clients are configured in plain text.
//
//	devidp [flags]               serve the issuer; SIGHUP or POST /rotate on the admin port rotates the key
//	devidp token [flags]         print a fresh access token from a running issuer (--dpop-key: DPoP-bound; --opaque: opaque;
//	                             --acr, --auth-time: a user's sign-in, for step-up rules)
//	devidp revoke [flags] TOKEN  revoke a token at a running issuer (RFC 7009)
//	devidp dpop [flags]          print a DPoP proof for a request (creates the key file when absent)
//	devidp healthcheck URL       exit 0 when URL answers 2xx (for distroless containers)
//	devidp version               the version, revision and Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/probe"
	"github.com/platformauth/envoy-okta-authz/internal/version"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "help" {
		if len(args) == 1 {
			args = []string{"--help"}
		} else {
			args = []string{args[1], "--help"}
		}
	}
	switch {
	case len(args) > 0 && (args[0] == "version" || args[0] == "--version"):
		fmt.Println(version.String("devidp"))
		return
	case len(args) > 0 && args[0] == "healthcheck":
		if len(args) != 2 || args[1] == "--help" || args[1] == "-h" {
			fmt.Println("Usage: devidp healthcheck URL\n\nExits 0 when URL answers 2xx within 3 seconds, 1 otherwise.")
			os.Exit(exitHelp(args))
		}
		os.Exit(probe.Run(args[1], os.Stderr))
	case len(args) > 0 && args[0] == "token":
		if err := token(args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "devidp token: %v\n", err)
			os.Exit(1)
		}
		return
	case len(args) > 0 && args[0] == "revoke":
		if err := revoke(args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "devidp revoke: %v\n", err)
			os.Exit(1)
		}
		return
	case len(args) > 0 && args[0] == "dpop":
		if err := proof(args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "devidp dpop: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := serve(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "devidp: %v\n", err)
		os.Exit(1)
	}
}

func exitHelp(args []string) int {
	if len(args) == 2 {
		return 0
	}
	return 2
}

// parse parses args into fs after the DEVIDP_* defaults; on --help it prints the usage (intro
// first) to stdout and returns flag.ErrHelp; a mistake is returned once, with a pointer to the help.
func parse(fs *flag.FlagSet, intro string, args []string) error {
	fs.SetOutput(io.Discard)
	if err := envDefaults(fs); err != nil {
		return err
	}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Print(intro)
		fmt.Println("\nFlags:")
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return fmt.Errorf("%v (%s --help lists the flags)", err, fs.Name())
	}
	return nil
}

// envDefaults sets each flag from its DEVIDP_* environment twin; flags on the command line win.
func envDefaults(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "DEVIDP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := os.Getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("devidp", flag.ContinueOnError)
	addr := fs.String("addr", ":9400", "listen address")
	adminAddr := fs.String("admin-addr", "127.0.0.1:9401", "admin listener (POST /rotate); keep it on loopback")
	issuer := fs.String("issuer", "http://localhost:9400/oauth2/default", "issuer URL as clients and the authz service reach it")
	audience := fs.String("audience", "api://default", "audience of minted tokens")
	clientID := fs.String("client-id", "demo-client", "client id for the client-credentials grant")
	secret := fs.String("client-secret", "demo-secret", "client secret")
	scopes := fs.String("scopes", "messages:read messages:write", "scopes the client may request, space-separated")
	ttl := fs.Duration("token-ttl", time.Hour, "token lifetime")
	keyFile := fs.String("key", "", "signing key, a PEM file created when absent, so that tokens survive restarts (authz --dev-key takes the same file)")
	if err := parse(fs, usage, args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg := devidp.Config{
		Issuer:   *issuer,
		Audience: *audience,
		Clients:  map[string]devidp.Client{*clientID: {Secret: *secret, Scopes: strings.Fields(*scopes)}},
		TokenTTL: *ttl,
	}
	if *keyFile != "" {
		key, created, err := devidp.LoadSigningKey(*keyFile)
		if err != nil {
			return fmt.Errorf("--key: %w", err)
		}
		cfg.SigningKey = key
		if created {
			log.Info("created a signing key", "file", *keyFile)
		}
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			kid, err := idp.Rotate()
			log.Info("signing key rotated", "kid", kid, "error", err)
		}
	}()
	// Bind first: the log says "listening" only once it is true.
	pubL, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	adminL, err := net.Listen("tcp", *adminAddr)
	if err != nil {
		pubL.Close()
		return fmt.Errorf("--admin-addr: %w", err)
	}
	pub := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	admin := &http.Server{Handler: idp.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	for _, p := range []struct {
		s *http.Server
		l net.Listener
	}{{pub, pubL}, {admin, adminL}} {
		go func() {
			if err := p.s.Serve(p.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Warn("DEVELOPMENT ISSUER listening: for local stacks and tests only, never production",
		"issuer", *issuer, "addr", pubL.Addr().String(), "admin", adminL.Addr().String(), "client_id", *clientID, "kid", idp.CurrentKID())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(pub.Shutdown(sctx), admin.Shutdown(sctx))
}

// token asks a running issuer's token endpoint for a client-credentials token and prints it.
func token(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("devidp token", flag.ContinueOnError)
	issuer := fs.String("issuer", "http://localhost:9400/oauth2/default", "issuer URL to ask")
	clientID := fs.String("client-id", "demo-client", "client id")
	secret := fs.String("client-secret", "demo-secret", "client secret")
	scope := fs.String("scope", "messages:read", "scopes to request, space-separated")
	keyFile := fs.String("dpop-key", "", "ask for a DPoP-bound token, proving this client key (a private JWK file; created when absent)")
	opaque := fs.Bool("opaque", false, "ask for an opaque token, which only the introspection endpoint reads (authz needs --introspection opaque or always)")
	acr := fs.String("acr", "", "the token's acr, how the user authenticated (e.g. urn:okta:loa:2fa:any), for step-up rules (RFC 9470)")
	authTime := fs.String("auth-time", "", "the token's auth_time, when the user authenticated: now, a duration ago (15m), or Unix seconds")
	if err := parse(fs, "Usage: devidp token [flags]\n\nAsks a running dev issuer's token endpoint for a client-credentials token and prints it.\n"+
		"--acr and --auth-time stand for a user's sign-in, as in Okta's tokens after one (dev issuer only).\n", args); err != nil {
		return err
	}
	at, err := parseAuthTime(*authTime, time.Now())
	if err != nil {
		return err
	}
	var key jwk.Key
	if *keyFile != "" {
		if *opaque {
			return errors.New("--opaque and --dpop-key: the dev issuer binds only JWTs")
		}
		var err error
		if key, _, err = devidp.LoadProofKey(*keyFile); err != nil {
			return err
		}
	}
	tok, err := devidp.RequestTokenWith(context.Background(), http.DefaultClient, *issuer, *clientID, *secret,
		devidp.TokenOptions{Scope: *scope, DPoPKey: key, Opaque: *opaque, ACR: *acr, AuthTime: at})
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("no dev issuer answers at %s: start one (go run ./cmd/devidp, authz --dev, or go run ./cmd/devstack), or point --issuer at it", *issuer)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

// parseAuthTime reads --auth-time: now, a duration ago, or Unix seconds; empty is none.
func parseAuthTime(v string, now time.Time) (time.Time, error) {
	switch {
	case v == "":
		return time.Time{}, nil
	case v == "now":
		return now, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("--auth-time %q: now, a duration ago (15m) or Unix seconds", v)
}

// revoke asks a running issuer's revocation endpoint to revoke a token.
func revoke(args []string) error {
	fs := flag.NewFlagSet("devidp revoke", flag.ContinueOnError)
	issuer := fs.String("issuer", "http://localhost:9400/oauth2/default", "issuer URL to ask")
	clientID := fs.String("client-id", "demo-client", "client id")
	secret := fs.String("client-secret", "demo-secret", "client secret")
	if err := parse(fs, "Usage: devidp revoke [flags] TOKEN\n\nRevokes TOKEN (- reads it from standard input) at a running dev issuer (RFC 7009):\nintrospection then answers it inactive.\n", args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give one TOKEN (or - to read it from standard input)")
	}
	tok := fs.Arg(0)
	if tok == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		if err != nil {
			return err
		}
		tok = strings.TrimSpace(string(b))
	}
	err := devidp.RevokeToken(context.Background(), http.DefaultClient, *issuer, *clientID, *secret, tok)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("no dev issuer answers at %s: start one (go run ./cmd/devidp, authz --dev, or go run ./cmd/devstack)", *issuer)
	}
	if err == nil {
		fmt.Fprintln(os.Stderr, "revoked")
	}
	return err
}

// proof prints a DPoP proof signed by the client key in --key for one request.
func proof(args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("devidp dpop", flag.ContinueOnError)
	keyFile := fs.String("key", "dpop-key.jwk", "the client's private JWK file (created, P-256, when absent)")
	method := fs.String("method", "GET", "the request's method (htm)")
	uri := fs.String("url", "", "the request's URL (htu; query and fragment are dropped), e.g. http://localhost:8080/api/messages")
	tok := fs.String("token", "", "the access token the request carries (ath); empty for a token request")
	if err := parse(fs, "Usage: devidp dpop [flags]\n\nPrints a DPoP proof (RFC 9449) for one request, signed by the client key in --key.\n", args); err != nil {
		return err
	}
	if *uri == "" {
		return errors.New("--url is required")
	}
	key, created, err := devidp.LoadProofKey(*keyFile)
	if err != nil {
		return err
	}
	if created {
		jkt, _ := devidp.Thumbprint(key)
		fmt.Fprintf(errOut, "created %s (thumbprint %s)\n", *keyFile, jkt)
	}
	p, err := devidp.Proof(key, *method, *uri, *tok, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, p)
	return err
}

const usage = `Usage:
  devidp [flags]            serve the Okta-shaped dev issuer (FOR DEVELOPMENT ONLY); SIGHUP or
                            POST /rotate on the admin listener rotates the signing key
  devidp token [flags]      print a fresh access token from a running issuer (--opaque: opaque;
                            --acr urn:okta:loa:2fa:any --auth-time now: after a second factor)
  devidp revoke TOKEN       revoke a token at a running issuer (RFC 7009)
  devidp dpop [flags]       print a DPoP proof for one request
  devidp healthcheck URL    exit 0 when URL answers 2xx (container health checks)
  devidp version            the version, revision and Go version (also --version)
  devidp help [COMMAND]     this help, or a command's

authz --dev runs the same issuer in process, at the same URL (http://localhost:9400/oauth2/default);
with the same --key file (authz --dev-key) their tokens are interchangeable.
Every flag can also be set by its environment twin (--token-ttl: DEVIDP_TOKEN_TTL).
`
