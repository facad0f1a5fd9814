package authzcmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/grpcapi"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/internal/tlsfiles"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
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

// certPollInterval is how often TLS files are checked for rotation.
const certPollInterval = 10 * time.Second

// grpcServiceName is the name Envoy's gRPC health check and grpcurl use.
const grpcServiceName = "envoy.service.auth.v3.Authorization"

// buildAuthorizer makes the key sets of every issuer (the flags' and the policy file's) and the
// authorizer on top of them. The key sets are not loaded yet: run them. stop releases what the
// authorizer holds (the DPoP replay store's connections) once no check runs any more.
func buildAuthorizer(c *config, log *slog.Logger, reg prometheus.Registerer) (*authz.Authorizer, []*jwks.Set, func() error, error) {
	jwksMetrics := jwks.NewMetrics(reg)
	introspectionMetrics := newIntrospectionMetrics(reg)
	// The flags' issuer is "default"; the policy file may add more, in the same shape.
	var specs []policy.IssuerSpec
	if c.Issuer != "" {
		specs = append(specs, policy.IssuerSpec{Name: "default", Issuer: c.Issuer, JWKSURL: c.JWKSURL,
			Audiences: c.Audiences, ClientIDs: c.ClientIDs, Algs: c.Algs, RequireATJWT: c.RequireATJWT,
			Introspection: c.Introspection})
	}
	specs = append(specs, policyIssuers(c.PolicyRules)...)
	var issuers []token.Issuer
	var sets []*jwks.Set
	for _, is := range specs {
		keys, err := jwks.New(jwks.Options{
			Issuer:    is.Issuer,
			JWKSURL:   is.JWKSURL,
			Algs:      is.Algs,
			AllowHTTP: c.AllowHTTPIssuer,
			Logger:    log.With("issuer", is.Name),
			OnFetch:   jwksMetrics.Observe(is.Name),
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("issuer %q: %w", is.Name, err)
		}
		sets = append(sets, keys)
		in, err := buildIntrospection(is.Name, is.Introspection, keys, log, introspectionMetrics)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("issuer %q: %w", is.Name, err)
		}
		issuers = append(issuers, token.Issuer{Name: is.Name, URL: is.Issuer, Audiences: is.Audiences, Introspection: in,
			ClientIDs: is.ClientIDs, Algs: is.Algs, RequireATJWT: is.RequireATJWT, Keys: keys})
	}
	cacheSize := c.CacheSize
	if cacheSize == 0 {
		cacheSize = -1 // off
	}
	verifier, err := token.NewVerifier(token.VerifierConfig{Issuers: issuers, Leeway: c.Leeway, CacheSize: cacheSize})
	if err != nil {
		return nil, nil, nil, err
	}
	verifier.RegisterCacheMetrics(reg)
	proofs, stop, err := buildDPoP(c, log, reg)
	if err != nil {
		return nil, nil, nil, err
	}
	pol := c.PolicyRules
	if pol == nil {
		pol = policy.Default(&c.Identity)
	}
	az := authz.NewAuthorizer(verifier, authz.Options{Realm: c.Realm, Logger: log, Policy: pol,
		Metrics: authz.NewMetrics(reg), DecisionLog: c.DecisionLog, AllowSampleRate: c.LogSample,
		DPoP: proofs, PublicURL: c.PublicURL})
	return az, sets, stop, nil
}

// allLoaded reports whether every issuer's key set is loaded.
func allLoaded(sets []*jwks.Set) bool {
	for _, s := range sets {
		if !s.Loaded() {
			return false
		}
	}
	return true
}

// run serves until ctx ends, then stops gracefully: in-flight checks finish.
func run(ctx context.Context, c *config, ls *listeners, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	az, sets, stopAuthorizer, err := buildAuthorizer(c, log, reg)
	if err != nil {
		return err
	}
	defer func() { _ = stopAuthorizer() }() // after the listeners: no check is in flight

	ls = limitedListeners(ls, &c.Limits, reg)
	check := grpcapi.New(az)
	opts := append(check.ServerOptions(), grpc.UnaryInterceptor(recoverUnary(log)))
	opts = append(opts, c.Limits.grpcOptions(c.ShutdownTimeout, reg)...)
	var certs *tlsfiles.Reloader
	if c.TLSCert != "" {
		certs, err = tlsfiles.New(tlsfiles.Files{Cert: c.TLSCert, Key: c.TLSKey, ClientCA: c.ClientCA}, log)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(certs.Config())))
		ls.http = tls.NewListener(ls.http, certs.Config())
	}
	gs := grpc.NewServer(opts...)
	check.Register(gs)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(grpcServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	decisionSrv := c.Limits.httpServer(httpapi.New(az, httpapi.Options{PathPrefix: c.HTTPPathPrefix, Source: c.HTTPSource,
		ClientCertHeader: c.ClientCertHeader}))
	var draining atomic.Bool
	adminSrv := c.Limits.adminServer(adminHandler(sets, reg, c.Pprof, &draining))

	g, gctx := errgroup.WithContext(ctx)
	if certs != nil {
		g.Go(func() error { certs.Run(gctx, certPollInterval); return nil })
	}
	for _, keys := range sets {
		g.Go(func() error { keys.Run(gctx); return nil })
	}
	g.Go(func() error {
		// Health turns SERVING once every issuer's key set is in; before that Envoy's health
		// check keeps traffic away and any Check that arrives gets 503.
		for _, keys := range sets {
			if keys.WaitLoaded(gctx) != nil {
				return nil
			}
		}
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus(grpcServiceName, healthpb.HealthCheckResponse_SERVING)
		log.Info("ready: key sets loaded", "issuers", len(sets))
		return nil
	})
	hup, stopHUP := catchHUP()
	defer stopHUP()
	if c.Policy != "" {
		g.Go(func() error { watchPolicy(gctx, c, az, log, policyPollInterval, hup); return nil })
	} else {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil // and later ones are caught and dropped until run returns
				case <-hup:
					log.Info("SIGHUP: no --policy to reload; ignored")
				}
			}
		})
	}
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
		if ctx.Err() != nil && c.ShutdownDrain > 0 {
			// Announce first, then stop: readiness and gRPC health say NOT_SERVING while every
			// listener keeps serving, so that Kubernetes takes the pod out of its Service and
			// Envoy's health checks move traffic away before any connection is refused.
			// HTTP keep-alive ends, so proxies reconnect (to a ready replica).
			log.Info("shutting down: draining; readiness and health say NOT_SERVING", "drain", c.ShutdownDrain.String())
			draining.Store(true)
			hs.Shutdown()
			decisionSrv.SetKeepAlivesEnabled(false)
			time.Sleep(c.ShutdownDrain)
		}
		if ctx.Err() != nil {
			log.Info("shutting down: closing the listeners; checks in flight finish", "timeout", c.ShutdownTimeout.String())
		}
		hs.Shutdown()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
		defer cancel()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		httpDone := make(chan error, 2)
		go func() { httpDone <- decisionSrv.Shutdown(shutdownCtx) }()
		go func() { httpDone <- adminSrv.Shutdown(shutdownCtx) }()
		select {
		case <-stopped:
		case <-shutdownCtx.Done():
			gs.Stop()
		}
		return errors.Join(<-httpDone, <-httpDone)
	})
	log.Info("authz listening", "grpc", ls.grpc.Addr().String(), "http", ls.http.Addr().String(),
		"admin", ls.admin.Addr().String(), "issuer", c.Issuer, "audiences", c.Audiences, "algs", c.Algs, "policy", c.Policy)
	err = g.Wait()
	log.Info("stopped")
	return err
}

func serveHTTP(s *http.Server, l net.Listener, name string) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// adminHandler serves /healthz (the process is alive), /readyz (every key set is loaded, and
// the service is not draining for shutdown) and /metrics (Prometheus).
func adminHandler(sets []*jwks.Set, reg *prometheus.Registry, withPprof bool, draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Load() {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		if !allLoaded(sets) {
			w.Header().Set("Retry-After", authz.RetryAfterSeconds)
			http.Error(w, "not ready: key set not loaded yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}
