// Package devstack runs the whole demo stack on this machine without Docker: the dev issuer,
// the authz service (the authz command itself, in process, with the demo route policy), the demo
// API, and nginx in front when it is installed (deploy/nginx.conf rendered for loopback). It is
// `go run ./cmd/devstack`, and the end-to-end tests start it the same way.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/demoapi"
	nginxconf "github.com/platformauth/envoy-okta-authz/deploy/nginx"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/authzcmd"
)

// Options place the stack. Zero addresses take the documented ports on 127.0.0.1.
type Options struct {
	IssuerAddr string // dev issuer (9400)
	GRPCAddr   string // authz gRPC (9001)
	HTTPAddr   string // authz HTTP decision API (9002)
	AdminAddr  string // authz admin (9003)
	APIAddr    string // demo API (3000)
	ProxyAddr  string // nginx (8080, Envoy's port in the compose stack)
	// Key is the dev issuer's signing key file (created when absent): tokens survive restarts.
	// Empty: a fresh key each start.
	Key string
	// Nginx is the nginx binary; empty finds it (deploy/nginx.Binary), "-" runs no proxy.
	Nginx string
	// Dir holds nginx's configuration, logs and temporary files; empty: a temporary directory.
	Dir string
	// Log receives the services' logs (JSON lines); nil discards them.
	Log io.Writer
}

// Stack is a running stack.
type Stack struct {
	Issuer   string // issuer URL
	GRPC     string // authz gRPC address
	HTTP     string // authz HTTP decision API, http://host:port
	Admin    string // authz admin, http://host:port
	API      string // the demo API, http://host:port (reach it through the proxy only)
	Proxy    string // nginx, http://host:port; empty without nginx
	NoProxy  error  // why there is no proxy, when there is none
	ClientID string // the dev issuer's client
	Secret   string
	// Tokens are ready tokens: "read" (messages:read) and "write" (messages:write only).
	Tokens map[string]string

	done    chan error
	running sync.WaitGroup // the pieces: Wait returns once each has let go of its port
}

// Wait blocks until the stack has stopped (its context ended, or a piece failed) and every
// piece has exited, and returns the first failure.
func (s *Stack) Wait() error {
	err := <-s.done
	s.running.Wait()
	return err
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Start starts the stack and returns once every piece answers; everything stops when ctx ends.
func Start(ctx context.Context, o Options) (*Stack, error) {
	o.IssuerAddr = orDefault(o.IssuerAddr, "127.0.0.1:9400")
	o.GRPCAddr = orDefault(o.GRPCAddr, "127.0.0.1:9001")
	o.HTTPAddr = orDefault(o.HTTPAddr, "127.0.0.1:9002")
	o.AdminAddr = orDefault(o.AdminAddr, "127.0.0.1:9003")
	o.APIAddr = orDefault(o.APIAddr, "127.0.0.1:3000")
	o.ProxyAddr = orDefault(o.ProxyAddr, "127.0.0.1:8080")
	if o.Log == nil {
		o.Log = io.Discard
	}
	ctx, cancel := context.WithCancelCause(ctx)
	s := &Stack{ClientID: "demo-client", Secret: "demo-secret", done: make(chan error, 1)}
	started := false
	defer func() {
		if !started {
			cancel(errors.New("start failed"))
		}
	}()
	// The first piece to fail stops the stack, and is what Wait reports.
	fail := func(what string, err error) {
		if err != nil {
			cancel(&pieceError{what, err})
		}
	}

	// The dev issuer.
	cfg := devidp.Config{
		Issuer:  devidp.IssuerFor(o.IssuerAddr),
		Clients: map[string]devidp.Client{s.ClientID: {Secret: s.Secret, Scopes: []string{"messages:read", "messages:write"}}},
	}
	if o.Key != "" {
		key, _, err := devidp.LoadSigningKey(o.Key)
		if err != nil {
			return nil, err
		}
		cfg.SigningKey = key
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		return nil, err
	}
	s.Issuer = idp.Issuer()
	if err := serve(ctx, &s.running, o.IssuerAddr, idp.Handler(), "dev issuer", fail); err != nil {
		return nil, err
	}
	// The demo API.
	if err := serve(ctx, &s.running, o.APIAddr, demoapi.Handler(time.Now), "demo API", fail); err != nil {
		return nil, err
	}
	s.API = "http://" + o.APIAddr

	// nginx, if there is one: the authz service then judges the request nginx names
	// (X-Original-*); without it, the request it receives, so that curl can ask it directly.
	nginx := o.Nginx
	if nginx == "" {
		nginx, s.NoProxy = nginxconf.Binary()
		if s.NoProxy == nil {
			if _, err := nginxconf.HeadersMore(); err != nil {
				nginx, s.NoProxy = "", err
			}
		}
	} else if nginx == "-" {
		nginx, s.NoProxy = "", errors.New("no proxy asked for")
	}
	source := "envoy"
	if nginx != "" {
		source = "nginx"
	}

	// The authz service: the command itself, --dev pointed at the issuer above (plain http
	// allowed, the demo route policy).
	args := []string{"--dev", "--issuer", s.Issuer, "--grpc-addr", o.GRPCAddr, "--http-addr", o.HTTPAddr,
		"--admin-addr", o.AdminAddr, "--http-request-headers", source}
	s.running.Go(func() {
		code := authzcmd.Main(ctx, args, func(string) string { return "" }, io.Discard, o.Log)
		if code != 0 {
			fail("authz", fmt.Errorf("exited with status %d (its log says why)", code))
		}
	})
	s.GRPC, s.HTTP, s.Admin = o.GRPCAddr, "http://"+o.HTTPAddr, "http://"+o.AdminAddr
	if err := waitFor(ctx, func() bool { return get(s.Admin+"/readyz") == http.StatusOK }); err != nil {
		return nil, fmt.Errorf("authz did not become ready: %w", err)
	}

	if nginx != "" {
		if err := startNginx(ctx, &s.running, o, nginx, fail); err != nil {
			return nil, err
		}
		s.Proxy = "http://" + o.ProxyAddr
		if err := waitFor(ctx, func() bool { return get(s.Proxy+"/healthz") == http.StatusOK }); err != nil {
			return nil, fmt.Errorf("nginx did not start: %w", err)
		}
	}

	s.Tokens = map[string]string{}
	for name, scope := range map[string]string{"read": "messages:read", "write": "messages:write", "revoked": "messages:read"} {
		if s.Tokens[name], err = idp.Mint(devidp.TokenRequest{ClientID: s.ClientID, Scopes: []string{scope}}); err != nil {
			return nil, err
		}
	}
	// The service introspects every token (authz --dev): a revoked one is refused, an opaque one
	// is read by introspection alone.
	idp.Revoke(s.Tokens["revoked"])
	if s.Tokens["opaque"], err = idp.MintOpaque(devidp.TokenRequest{ClientID: s.ClientID, Scopes: []string{"messages:read"}}); err != nil {
		return nil, err
	}
	started = true
	go func() {
		<-ctx.Done()
		var failed *pieceError
		if errors.As(context.Cause(ctx), &failed) {
			s.done <- failed
			return
		}
		s.done <- nil // stopped by the caller
	}()
	return s, nil
}

// pieceError is a piece of the stack that failed.
type pieceError struct {
	what string
	err  error
}

func (e *pieceError) Error() string { return e.what + ": " + e.err.Error() }
func (e *pieceError) Unwrap() error { return e.err }

// serve runs h on addr until ctx ends.
func serve(ctx context.Context, running *sync.WaitGroup, addr string, h http.Handler, what string, fail func(string, error)) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	running.Go(func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			fail(what, err)
		}
	})
	return nil
}

func startNginx(ctx context.Context, running *sync.WaitGroup, o Options, bin string, fail func(string, error)) error {
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "devstack-nginx-")
		if err != nil {
			return err
		}
		context.AfterFunc(ctx, func() { _ = os.RemoveAll(d) })
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	conf, err := nginxconf.Local{Listen: o.ProxyAddr, API: o.APIAddr, AuthzHTTP: o.HTTPAddr, Dir: dir}.Render()
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", path, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	// SIGTERM is nginx's fast shutdown: the master stops its workers too.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	running.Go(func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited")
		}
		logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		fail("nginx", fmt.Errorf("%w; %s", err, lastLines(string(logs), 3)))
	})
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func get(url string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls ready (a child's readiness, which nothing announces) for up to 15 seconds, and
// gives up early when a piece fails (which ends ctx).
func waitFor(ctx context.Context, ready func() bool) error {
	deadline := time.Now().Add(15 * time.Second)
	for !ready() {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("timed out after 15s")
		}
	}
	return nil
}

// Guide is what to try: the tokens and the curl lines for 401, 403 and 200, through nginx when
// it runs, else against the HTTP decision API.
func (s *Stack) Guide() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Local stack — Ctrl-C stops it.\n\n")
	fmt.Fprintf(&b, "  dev issuer   %s   (client %s / %s)\n", s.Issuer, s.ClientID, s.Secret)
	fmt.Fprintf(&b, "  authz        gRPC %s · HTTP decision API %s · metrics %s/metrics\n", s.GRPC, s.HTTP, s.Admin)
	fmt.Fprintf(&b, "  demo API     %s   (trusts x-authz-* headers: reach it through the proxy)\n", s.API)
	base := s.HTTP
	if s.Proxy != "" {
		fmt.Fprintf(&b, "  nginx        %s   ← send requests here\n", s.Proxy)
		base = s.Proxy
	} else {
		fmt.Fprintf(&b, "  nginx        not running (%v): ask the HTTP decision API directly\n", s.NoProxy)
	}
	fmt.Fprintf(&b, "\nTokens, valid for an hour:\n  export TOKEN=%s\n  export TOKEN_WRITE=%s\n", s.Tokens["read"], s.Tokens["write"])
	fmt.Fprintf(&b, "\n  curl -i %s/api/messages                                         # 401: no token\n", base)
	fmt.Fprintf(&b, "  curl -i -H \"Authorization: Bearer $TOKEN_WRITE\" %s/api/messages  # 403: lacks messages:read\n", base)
	fmt.Fprintf(&b, "  curl -i -H \"Authorization: Bearer $TOKEN\" %s/api/messages        # 200\n", base)
	fmt.Fprintf(&b, "\nEvery token is also introspected at the dev issuer (answers reused for 5 s). A revoked token:\n")
	fmt.Fprintf(&b, "  export REVOKED=%s\n", s.Tokens["revoked"])
	fmt.Fprintf(&b, "  curl -i -H \"Authorization: Bearer $REVOKED\" %s/api/messages      # 401: token_inactive\n", base)
	fmt.Fprintf(&b, "Revoke $TOKEN, and 5 s later it is refused too: go run ./cmd/devidp revoke \"$TOKEN\"\n")
	fmt.Fprintf(&b, "An opaque token, which only introspection reads:\n  export OPAQUE=%s\n", s.Tokens["opaque"])
	fmt.Fprintf(&b, "  curl -i -H \"Authorization: Bearer $OPAQUE\" %s/api/messages       # 200\n", base)
	fmt.Fprintf(&b, "\nMore tokens: go run ./cmd/devidp token --scope messages:read\n")
	return b.String()
}
