package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/jwks"
)

// listeners are the service's three sockets, opened before run so that tests can use port 0.
type listeners struct {
	grpc, http, admin net.Listener
}

func listen(c *config) (*listeners, error) {
	var ls listeners
	var err error
	if ls.grpc, err = net.Listen("tcp", c.GRPCAddr); err != nil {
		return nil, fmt.Errorf("--grpc-addr: %w", err)
	}
	if ls.http, err = net.Listen("tcp", c.HTTPAddr); err != nil {
		ls.grpc.Close()
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	if ls.admin, err = net.Listen("tcp", c.AdminAddr); err != nil {
		ls.grpc.Close()
		ls.http.Close()
		return nil, fmt.Errorf("--admin-addr: %w", err)
	}
	return &ls, nil
}

// grpcServiceName is the name Envoy's gRPC health check and grpcurl use.
const grpcServiceName = "envoy.service.auth.v3.Authorization"

// run serves until ctx ends, then stops gracefully: in-flight checks finish.
func run(ctx context.Context, c *config, ls *listeners, log *slog.Logger) error {
	keys, err := jwks.New(jwks.Options{
		Issuer:    c.Issuer,
		JWKSURL:   c.JWKSURL,
		Algs:      c.Algs,
		AllowHTTP: c.AllowHTTPIssuer,
		Logger:    log,
	})
	if err != nil {
		return err
	}
	verifier, err := authz.NewVerifier(authz.VerifierConfig{
		Issuers: []authz.Issuer{{URL: c.Issuer, Audiences: c.Audiences, ClientIDs: c.ClientIDs, Algs: c.Algs, Keys: keys}},
		Leeway:  c.Leeway,
	})
	if err != nil {
		return err
	}
	az := authz.NewAuthorizer(verifier, authz.Options{Realm: c.Realm, Logger: log})

	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, authz.NewGRPCServer(az))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(grpcServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	decisionSrv := &http.Server{Handler: authz.NewHTTPServer(az, c.HTTPPathPrefix), ReadHeaderTimeout: 5 * time.Second}
	adminSrv := &http.Server{Handler: adminHandler(keys), ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { keys.Run(gctx); return nil })
	g.Go(func() error {
		// Health turns SERVING once the first key set is in; before that Envoy's health check
		// keeps traffic away and any Check that arrives gets 503.
		if keys.WaitLoaded(gctx) == nil {
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus(grpcServiceName, healthpb.HealthCheckResponse_SERVING)
			log.Info("ready: key set loaded", "kids", keys.KeyIDs())
		}
		return nil
	})
	g.Go(func() error {
		if err := gs.Serve(ls.grpc); err != nil {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error { return serveHTTP(decisionSrv, ls.http, "http") })
	g.Go(func() error { return serveHTTP(adminSrv, ls.admin, "admin") })
	g.Go(func() error {
		<-gctx.Done()
		hs.Shutdown()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutdownCtx.Done():
			gs.Stop()
		}
		return errors.Join(decisionSrv.Shutdown(shutdownCtx), adminSrv.Shutdown(shutdownCtx))
	})
	log.Info("authz listening", "grpc", ls.grpc.Addr().String(), "http", ls.http.Addr().String(),
		"admin", ls.admin.Addr().String(), "issuer", c.Issuer, "audiences", c.Audiences, "algs", c.Algs)
	return g.Wait()
}

func serveHTTP(s *http.Server, l net.Listener, name string) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// adminHandler serves /healthz (the process is alive) and /readyz (a key set is loaded).
func adminHandler(keys *jwks.Set) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !keys.Loaded() {
			w.Header().Set("Retry-After", authz.RetryAfterSeconds)
			http.Error(w, "not ready: no key set loaded yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintf(w, "ready: %d keys, fetched %s\n", len(keys.KeyIDs()), keys.FetchedAt().UTC().Format(time.RFC3339))
	})
	return mux
}
