// Command demoapi serves the demo API of Okta's resource-server quickstart (port 3000). It
// trusts the x-authz-* identity headers, so it must only be reachable through the proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/demoapi"
	"github.com/platformauth/envoy-okta-authz/internal/probe"
	"github.com/platformauth/envoy-okta-authz/internal/version"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "healthcheck" {
		os.Exit(probe.Run(os.Args[2], os.Stderr))
	}
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(version.String("demoapi"))
		return
	}
	addr := flag.String("addr", envOr("DEMOAPI_ADDR", ":3000"), "listen address (env DEMOAPI_ADDR)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Bind first: the log says "listening" only once it is true.
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demoapi: --addr: %v\n", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: demoapi.Handler(time.Now), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo API listening", "addr", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
