// Command demoapi serves the demo API of Okta's resource-server quickstart (port 3000). It
// trusts the x-authz-* identity headers, so it must only be reachable through the proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/demoapi"
	"github.com/platformauth/envoy-okta-authz/internal/probe"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "healthcheck" {
		os.Exit(probe.Run(os.Args[2], os.Stderr))
	}
	addr := flag.String("addr", envOr("DEMOAPI_ADDR", ":3000"), "listen address (env DEMOAPI_ADDR)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: *addr, Handler: demoapi.Handler(time.Now), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo API listening", "addr", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "demoapi: %v\n", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
