// Command devstack runs the demo stack on this machine without Docker (package
// internal/devstack): the dev issuer, the authz service with the demo route policy, the demo API,
// and nginx in front when it is installed, on the documented ports. It prints tokens and the
// curl lines to try, and stops everything on Ctrl-C.
//
//	go run ./cmd/devstack [--key FILE] [--no-nginx] [--log FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/platformauth/envoy-okta-authz/internal/devstack"
	"github.com/platformauth/envoy-okta-authz/internal/version"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(version.String("devstack"))
		return
	}
	var o devstack.Options
	noNginx := flag.Bool("no-nginx", false, "run no proxy: ask the HTTP decision API directly")
	logFile := flag.String("log", "", "write the services' logs (JSON lines) to this file; default standard error")
	flag.StringVar(&o.Key, "key", "", "the dev issuer's signing key, a PEM file created when absent: tokens survive restarts")
	flag.StringVar(&o.Nginx, "nginx", "", "the nginx binary (default: found on PATH or in /usr/sbin)")
	flag.Parse()
	if *noNginx {
		o.Nginx = "-"
	}
	o.Log = os.Stderr
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		o.Log = io.Writer(f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := devstack.Start(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(s.Guide())
	if err := s.Wait(); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "devstack: stopped")
}
