package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/platformauth/envoy-okta-authz/devidp"
)

// soak sends a fixed-rate mix of valid, expired, forged and missing tokens for o.soak, rotates
// the issuer's key halfway, and reports heap, goroutines and open files at the start and end,
// and every decision that differed from the expected one.
func soak(ctx context.Context, e *env, o options) error {
	srv, err := e.startAuthz("authz")
	if err != nil {
		return err
	}
	defer srv.stop()
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	valid, err := e.mint(200)
	if err != nil {
		return err
	}
	expired, err := e.idp.Mint(devidp.TokenRequest{ClientID: "bench", Extra: map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}})
	if err != nil {
		return err
	}
	forged := valid[0][:len(valid[0])-8] + "AAAAAAAA"
	var pool atomic.Pointer[[]string]
	pool.Store(&valid)

	type sample struct{ heap, goroutines, fds float64 }
	read := func() sample {
		return sample{scrapeFloat(srv.admin, "go_memstats_heap_inuse_bytes"), scrapeFloat(srv.admin, "go_goroutines"),
			scrapeFloat(srv.admin, "process_open_fds")}
	}

	var sent, wrong atomic.Int64
	check := func(authorization string, want codes.Code) {
		resp, err := client.Check(ctx, checkRequest(authorization))
		sent.Add(1)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != want {
			if wrong.Add(1) <= 5 {
				fmt.Fprintf(os.Stderr, "wrong decision: want %s, got %v %v\n", want, resp.GetStatus(), err)
			}
		}
	}
	one := func() {
		switch r := rand.IntN(10); {
		case r < 7:
			toks := *pool.Load()
			check("Bearer "+toks[rand.IntN(len(toks))], codes.OK)
		case r == 7:
			check("Bearer "+expired, codes.Unauthenticated)
		case r == 8:
			check("Bearer "+forged, codes.Unauthenticated)
		default:
			check("", codes.Unauthenticated)
		}
	}

	// Warm up, then take the first sample.
	for range 2000 {
		one()
	}
	start := read()
	fmt.Fprintf(os.Stderr, "soak: %s at %d requests/s\n", o.soak, o.soakRate)
	jobs := make(chan struct{}, o.soakRate)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range jobs {
				one()
			}
		})
	}
	tick := time.NewTicker(10 * time.Millisecond)
	perTick := max(1, o.soakRate/100)
	deadline := time.Now().Add(o.soak)
	rotated := false
	for now := range tick.C {
		if now.After(deadline) {
			break
		}
		if !rotated && now.After(deadline.Add(-o.soak/2)) {
			rotated = true
			kid, err := e.idp.Rotate()
			if err != nil {
				return err
			}
			fresh, err := e.mint(200)
			if err != nil {
				return err
			}
			mixed := append(append([]string{}, valid[:100]...), fresh...)
			pool.Store(&mixed)
			fmt.Fprintf(os.Stderr, "soak: rotated the signing key to %s; new tokens mixed in\n", kid)
		}
		for range perTick {
			select {
			case jobs <- struct{}{}:
			default: // the service is behind; the rate is a ceiling
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	// Let the runtime settle before the last sample: a forced GC makes heaps comparable.
	_, _ = http.Get("http://" + srv.admin + "/metrics")
	end := read()
	fmt.Printf("\nsoak: %s, %d checks, %d wrong decisions, key rotated halfway\n", o.soak, sent.Load(), wrong.Load())
	fmt.Println("| | start | end |")
	fmt.Println("|---|---:|---:|")
	fmt.Printf("| heap in use (MiB) | %.1f | %.1f |\n", start.heap/(1<<20), end.heap/(1<<20))
	fmt.Printf("| goroutines | %.0f | %.0f |\n", start.goroutines, end.goroutines)
	fmt.Printf("| open fds | %.0f | %.0f |\n", start.fds, end.fds)
	fmt.Printf("refetches: %s", scrapeAll(srv.admin, "authz_jwks_fetches_total"))
	flat := end.goroutines <= start.goroutines+5 && end.fds <= start.fds+5 && end.heap <= start.heap*2+8<<20
	if wrong.Load() > 0 || !flat {
		return fmt.Errorf("soak failed: %d wrong decisions, flat=%v", wrong.Load(), flat)
	}
	fmt.Println("soak: flat and correct")
	return nil
}

// scrape returns the value of the first sample of a metric on the admin port.
func scrape(admin, metric string) string {
	for _, line := range scrapeLines(admin, metric) {
		if f := strings.Fields(line); len(f) == 2 {
			return f[1]
		}
	}
	return ""
}

func scrapeFloat(admin, metric string) float64 {
	v, _ := strconv.ParseFloat(scrape(admin, metric), 64)
	return v
}

func scrapeAll(admin, metric string) string {
	return strings.Join(scrapeLines(admin, metric), "\n") + "\n"
}

func scrapeLines(admin, metric string) []string {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, metric+" ") || strings.HasPrefix(line, metric+"{") {
			out = append(out, line)
		}
	}
	return out
}
