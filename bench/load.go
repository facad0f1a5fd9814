package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/grpcapi"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
)

// scenario is one kind of load against one server.
type scenario struct {
	name, server, what string
	// payload is the file of CheckRequests ghz sends round-robin.
	payload string
	// fresh, when set, writes the payload anew before each round, sized for the floor's rate
	// (DPoP proofs are accepted once: each round needs proofs no round has sent).
	fresh func(floorRPS float64) error
	// drive, when set, sends the load with the in-process driver instead of ghz.
	drive *driverLoad
	// floor names the scenario this one's rounds are paired with; empty for a floor.
	floor string
	// endpoint, when set, is the introspection stand-in whose calls the rounds count.
	endpoint *introspectionEndpoint
}

// roundOf runs one round of sc against srv.
func (e *env) roundOf(ctx context.Context, sc scenario, srv *server, o options, rep int) (r *roundResult, err error) {
	if sc.endpoint != nil {
		defer func() {
			if err != nil {
				// What the service's introspection client saw: its refusals before a call (at
				// the in-flight limit, with the breaker open) are not logged.
				fmt.Fprint(os.Stderr, scrapeAll(srv.admin, "authz_introspection_calls_total"), scrapeAll(srv.admin, "authz_introspection_cache_total"))
			}
		}()
	}
	if sc.drive == nil {
		return e.ghzRound(srv.grpc, filepath.Join(e.dir, sc.payload+".bin"), o)
	}
	addr := srv.grpc
	if sc.drive.proto == "http" {
		addr = srv.http
	}
	return driveRound(ctx, sc.drive, addr, o.round, uint64(rep))
}

// measurement is one round's figures.
type measurement struct {
	rps      float64
	p50, p99 time.Duration
	cpuPerOp time.Duration
	// clientPerOp is ghz's CPU time per call.
	clientPerOp time.Duration
	// callsPerCheck and connsPerCheck: calls to the introspection endpoint, and connections
	// the service opened to it, per check (scenarios with an endpoint).
	callsPerCheck, connsPerCheck float64
}

func load(ctx context.Context, e *env, o options) error {
	if o.reps == 0 {
		return memory(ctx, e, o)
	}
	// Payloads.
	hot, err := e.mint(1)
	if err != nil {
		return err
	}
	cold, err := e.mint(o.distinct)
	if err != nil {
		return err
	}
	forged := hot[0][:len(hot[0])-8] + "AAAAAAAA"
	// A token with the two claims the lean server forwards as headers.
	lean, err := e.idp.Mint(devidp.TokenRequest{ClientID: "bench", Scopes: []string{"messages:read"},
		Extra: map[string]any{"email": "ada@example.com", "groups": []string{"admins", "users"}}})
	if err != nil {
		return err
	}
	payloads := map[string][]string{"hot": hot, "cold": cold, "invalid": {forged}, "none": {""}, "lean": {lean}}
	for name, toks := range payloads {
		var reqs []*authv3.CheckRequest
		for _, t := range toks {
			auth := ""
			if t != "" {
				auth = "Bearer " + t
			}
			reqs = append(reqs, checkRequest(auth))
		}
		if err := writePayload(filepath.Join(e.dir, name+".bin"), reqs); err != nil {
			return err
		}
	}

	// Servers: the floor, the service, and the service without its token cache (every request
	// verifies RS256).
	// The floor runs with the gRPC server options the service runs with (stream workers), so
	// the ratios measure the service's own work; the same no-op with gRPC's defaults is shown
	// for reference.
	noop, err := e.startNoop("--workers", fmt.Sprint(grpcapi.StreamWorkers))
	if err != nil {
		return err
	}
	defer noop.stop()
	plain, err := e.startNoop()
	if err != nil {
		return err
	}
	defer plain.stop()
	cached, err := e.startAuthz("authz", "--pprof")
	if err != nil {
		return err
	}
	defer cached.stop()
	uncached, err := e.startAuthz("authz --cache-size 0", "--cache-size", "0", "--pprof")
	if err != nil {
		return err
	}
	defer uncached.stop()
	// Lean identity: sub, client id and scopes, two claim headers, no x-authz-claims.
	leanSrv, err := e.startAuthz("authz (lean identity)", "--claims-header=false",
		"--claim-headers", "x-user-email=email,x-user-groups=groups", "--pprof")
	if err != nil {
		return err
	}
	defer leanSrv.stop()
	// The same no-op, answering with the service's own hot allow response.
	allow, err := e.captureResponse(ctx, cached, hot[0])
	if err != nil {
		return err
	}
	shaped, err := e.startNoop("--workers", fmt.Sprint(grpcapi.StreamWorkers), "--response", allow)
	if err != nil {
		return err
	}
	defer shaped.stop()
	servers := map[string]*server{"noop": noop, "noop-defaults": plain, "noop-shaped": shaped, "authz": cached,
		"uncached": uncached, "lean": leanSrv}

	// DPoP: a bound token (cached after its first use) with a fresh ES256 proof per request,
	// and with one proof replayed.
	_, dpopProofs, err := e.dpopPayloads()
	if err != nil {
		return err
	}
	replayed, err := dpopProofs(1)
	if err != nil {
		return err
	}
	if err := writePayload(filepath.Join(e.dir, "dpop-replayed.bin"), replayed); err != nil {
		return err
	}
	freshProofs := func(floorRPS float64) error {
		n := int(floorRPS*o.round.Seconds()*1.3) + 1000
		reqs, err := dpopProofs(n)
		if err != nil {
			return err
		}
		return writePayload(filepath.Join(e.dir, "dpop.bin"), reqs)
	}

	// The in-process driver's loads: Envoy-shaped checks on four connections (one per Envoy
	// worker), nginx-shaped requests to the HTTP decision API, and a working set of many tokens.
	envoyHot := &driverLoad{proto: "grpc", conns: 4, streams: o.concurrency, single: hot[0], wantAllow: true}
	httpHot := &driverLoad{proto: "http", streams: o.concurrency, single: hot[0], wantAllow: true}
	var mix *tokenMix
	if o.workingSet > 0 && (o.only == "" || strings.Contains(o.only, "workingset")) {
		if mix, err = e.workingSet(o); err != nil {
			return err
		}
		ws, err := e.startAuthz("authz (working set)", "--cache-size", fmt.Sprint(o.workingSet+len(mix.fresh)+1000), "--pprof")
		if err != nil {
			return err
		}
		defer ws.stop()
		servers["ws"] = ws
		if err := prefill(ctx, ws, mix.set); err != nil {
			return err
		}
	}
	wsGRPC := &driverLoad{proto: "grpc", conns: 4, streams: o.concurrency, mix: mix, wantAllow: true}

	// Introspection (bench/introspect.go): opaque tokens that the service sends to a stand-in
	// for Okta's introspection endpoint. Hits: a working set whose answers were cached
	// beforehand (the service's --introspection-cache-size holds the set, as an operator sizes
	// it), drawn as above but with no new tokens; misses: a token never seen before on every
	// call.
	var ep *introspectionEndpoint
	var introHit, introMiss *driverLoad
	if o.includes("introspection-hit") || o.includes("introspection-miss") {
		opaque := newOpaqueTokens()
		if ep, err = startIntrospectionEndpoint(e.idp.Issuer(), e.idp.Audience(), opaque); err != nil {
			return err
		}
		defer ep.stop()
		start := func(name string, ttl time.Duration, extra ...string) (*server, error) {
			args, err := e.introspectionArgs(ep, ttl)
			if err != nil {
				return nil, err
			}
			args = append(args, extra...)
			// Warnings on: an introspection call that fails says why in the bench's output.
			srv, err := e.startAuthz(name, append(args, "--pprof", "--log-level", "warn")...)
			if err != nil {
				return nil, err
			}
			servers[name] = srv
			return srv, nil
		}
		if o.workingSet > 0 && o.includes("introspection-hit") {
			srv, err := start("intro-hit", introspectionCacheTTL, "--introspection-cache-size", strconv.Itoa(max(o.workingSet, introspect.DefaultCacheSize)))
			if err != nil {
				return err
			}
			defer srv.stop()
			toks := opaque.tokens(0, o.workingSet)
			fmt.Fprintf(os.Stderr, "introspecting %d opaque tokens for intro-hit…\n", o.workingSet)
			if err := prefillOpaque(ctx, srv, toks); err != nil {
				return err
			}
			introHit = &driverLoad{proto: "grpc", conns: 4, streams: o.concurrency, mix: &tokenMix{set: toks}, wantAllow: true}
		}
		if o.includes("introspection-miss") {
			srv, err := start("intro-miss", introspect.DefaultCacheTTL)
			if err != nil {
				return err
			}
			defer srv.stop()
			stream := &tokenStream{tokens: opaque}
			stream.next.Store(1 << 40) // never one of the sets above
			introMiss = &driverLoad{proto: "grpc", conns: 4, streams: o.concurrency, stream: stream, wantAllow: true}
		}
	}
	wsHTTP := &driverLoad{proto: "http", streams: o.concurrency, mix: mix, wantAllow: true}

	scenarios := []scenario{
		{name: "floor", server: "noop", payload: "hot", what: fmt.Sprintf("no-op Check server (same gRPC stack, same %d stream workers), ghz, one connection", grpcapi.StreamWorkers)},
		{name: "floor-defaults", server: "noop-defaults", payload: "hot", what: "the no-op with gRPC's default server options (reference)", floor: "floor"},
		{name: "floor-shaped", server: "noop-shaped", payload: "hot", what: "the no-op answering with the service's hot allow response, pre-encoded (reference)", floor: "floor"},
		{name: "hot", server: "authz", payload: "hot", what: "one valid token, repeated (cache hit)", floor: "floor"},
		{name: "hot-lean", server: "lean", payload: "lean", what: "the same, lean identity: sub, client id, scopes and two claim headers, no x-authz-claims", floor: "floor"},
		{name: "cold", server: "uncached", payload: "cold", what: fmt.Sprintf("%d distinct valid tokens, RS256 verify each (cache off)", o.distinct), floor: "floor"},
		{name: "invalid", server: "authz", payload: "invalid", what: "one token with a bad signature, repeated", floor: "floor"},
		{name: "none", server: "authz", payload: "none", what: "no Authorization header", floor: "floor"},
		{name: "dpop", server: "authz", payload: "dpop", what: "a DPoP-bound token (cached) with a fresh ES256 proof per request", fresh: freshProofs, floor: "floor"},
		{name: "dpop-replayed", server: "authz", payload: "dpop-replayed", what: "the same, one proof replayed (refused after its first use)", floor: "floor"},

		{name: "floor-envoy", server: "noop", drive: envoyHot, what: fmt.Sprintf("no-op Check server, Envoy-shaped CheckRequests, %d streams on 4 connections", o.concurrency)},
		{name: "hot-envoy", server: "authz", drive: envoyHot, what: "one valid token, repeated", floor: "floor-envoy"},
		{name: "workingset-grpc", server: "ws", drive: wsGRPC, what: fmt.Sprintf("%d tokens drawn Zipf(s=%.1f), one call in %d a new token", o.workingSet, zipfS, freshEvery), floor: "floor-envoy"},
		{name: "introspection-hit", server: "intro-hit", drive: introHit, endpoint: ep, floor: "floor-envoy",
			what: fmt.Sprintf("%d opaque tokens drawn Zipf(s=%.1f), each introspected once beforehand (cache TTL %gh, cache size the set); endpoint answers in %s", o.workingSet, zipfS, introspectionCacheTTL.Hours(), introspectionLatency)},
		{name: "introspection-miss", server: "intro-miss", drive: introMiss, endpoint: ep, floor: "floor-envoy",
			what: fmt.Sprintf("a new opaque token every call: one introspection call each, %s", introspectionLatency)},

		{name: "floor-http", server: "noop", drive: httpHot, what: fmt.Sprintf("no-op net/http server, nginx-shaped auth_request subrequests, %d keep-alive connections", o.concurrency)},
		{name: "hot-http", server: "authz", drive: httpHot, what: "one valid token, repeated", floor: "floor-http"},
		{name: "workingset-http", server: "ws", drive: wsHTTP, what: "the working set, as above", floor: "floor-http"},
	}
	scenarios = slices.DeleteFunc(scenarios, func(sc scenario) bool {
		return servers[sc.server] == nil || !o.wants(sc)
	})
	byName := map[string]scenario{}
	for _, sc := range scenarios {
		byName[sc.name] = sc
	}
	// Warm up every server once. Then, rep by rep, each scenario's round directly follows a
	// round of its floor, and its ratios are taken against that round: the machine's speed
	// drifts between rounds far more than within a pair.
	warm := o
	warm.round = time.Second
	for _, sc := range scenarios {
		if sc.fresh != nil {
			if err := sc.fresh(20_000); err != nil {
				return err
			}
		}
		if _, err := e.roundOf(ctx, sc, servers[sc.server], warm, 0); err != nil {
			return err
		}
	}
	measure := func(sc scenario, rep int) (measurement, error) {
		srv := servers[sc.server]
		before, err := srv.cpuTime()
		if err != nil {
			return measurement{}, err
		}
		var profiled chan error
		if o.profile != "" && rep == 0 && sc.name == o.profileScenario {
			profiled = make(chan error, 1)
			go func() { profiled <- fetchProfile(srv.admin, o.profile, o.round-time.Second) }()
		}
		var calls, conns int64
		if sc.endpoint != nil {
			calls, conns = sc.endpoint.calls.Load(), sc.endpoint.conns.Load()
		}
		r, err := e.roundOf(ctx, sc, srv, o, rep+1)
		if profiled != nil {
			if err := <-profiled; err != nil {
				return measurement{}, fmt.Errorf("profile: %w", err)
			}
			fmt.Fprintf(os.Stderr, "CPU profile of the %s round written to %s (go tool pprof -top %s)\n", sc.name, o.profile, o.profile)
		}
		if err != nil {
			return measurement{}, fmt.Errorf("%s: %w", sc.name, err)
		}
		after, err := srv.cpuTime()
		if err != nil {
			return measurement{}, err
		}
		m := measurement{rps: r.RPS, p50: r.p50, p99: r.p99, cpuPerOp: (after - before) / time.Duration(r.Count),
			clientPerOp: r.clientCPU / time.Duration(r.Count)}
		extra := ""
		if sc.endpoint != nil {
			m.callsPerCheck = float64(sc.endpoint.calls.Load()-calls) / float64(r.Count)
			m.connsPerCheck = float64(sc.endpoint.conns.Load()-conns) / float64(r.Count)
			extra = fmt.Sprintf("  endpoint %.0f calls/s, %.3f calls and %.3f new connections per check", m.callsPerCheck*m.rps, m.callsPerCheck, m.connsPerCheck)
		}
		fmt.Fprintf(os.Stderr, "rep %d %-16s %8.0f rps  p50 %-10s p99 %-10s cpu/op %-10s client cpu/op %s%s\n", rep+1, sc.name, m.rps, m.p50, m.p99, m.cpuPerOp, m.clientPerOp, extra)
		return m, nil
	}
	results := map[string][]pair{}
	floors := map[string][]measurement{}
	for rep := range o.reps {
		for _, sc := range scenarios {
			if sc.floor == "" {
				continue
			}
			f, err := measure(byName[sc.floor], rep)
			if err != nil {
				return err
			}
			if sc.fresh != nil {
				if err := sc.fresh(f.rps); err != nil {
					return err
				}
			}
			m, err := measure(sc, rep)
			if err != nil {
				return err
			}
			floors[sc.floor] = append(floors[sc.floor], f)
			results[sc.name] = append(results[sc.name], pair{floor: f, m: m})
		}
	}
	if mix != nil {
		rss, err := servers["ws"].rssBytes()
		if err != nil {
			return err
		}
		fmt.Printf("working set: RSS %.1f MiB with %d tokens in use, %d of %d new tokens sent\n",
			float64(rss)/(1<<20), o.workingSet, min(mix.next.Load(), int64(len(mix.fresh))), len(mix.fresh))
	}

	printTable(o, scenarios, floors, results)
	printIntrospection(scenarios, results)
	if o.memTokens > 0 {
		return memory(ctx, e, o)
	}
	return nil
}

// captureResponse asks srv once with token and saves its encoded response to a file.
func (e *env) captureResponse(ctx context.Context, srv *server, token string) (string, error) {
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("Bearer "+token))
	if err != nil {
		return "", err
	}
	if resp.GetStatus().GetCode() != 0 {
		return "", fmt.Errorf("the hot token was refused: %v", resp.GetStatus())
	}
	wire, err := proto.Marshal(resp)
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, "allow-response.bin")
	return path, os.WriteFile(path, wire, 0o600)
}

// dpopPayloads mints a token bound to a fresh client key and returns it with a function that
// makes n CheckRequests carrying it, each with a fresh proof (distinct jti), signed in parallel.
func (e *env) dpopPayloads() (string, func(n int) ([]*authv3.CheckRequest, error), error) {
	key, err := devidp.NewProofKey()
	if err != nil {
		return "", nil, err
	}
	jkt, err := devidp.Thumbprint(key)
	if err != nil {
		return "", nil, err
	}
	tok, err := e.idp.Mint(devidp.TokenRequest{ClientID: "bench", Scopes: []string{"messages:read"},
		Extra: map[string]any{"cnf": map[string]string{"jkt": jkt}}})
	if err != nil {
		return "", nil, err
	}
	proofs := func(n int) ([]*authv3.CheckRequest, error) {
		out := make([]*authv3.CheckRequest, n)
		err := parallel(n, func(i int) error {
			p, err := devidp.Proof(key, "GET", "https://api.example/api/messages", tok, time.Now())
			if err != nil {
				return err
			}
			r := checkRequest("DPoP " + tok)
			r.Attributes.Request.Http.Headers["dpop"] = p
			out[i] = r
			return nil
		})
		return out, err
	}
	return tok, proofs, nil
}

// parallel runs f(0..n-1) on four workers and returns the first error.
func parallel(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	workers := 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// mint returns n distinct tokens from the dev issuer, signed in parallel.
func (e *env) mint(n int) ([]string, error) {
	out := make([]string, n)
	err := parallel(n, func(i int) error {
		tok, err := e.idp.Mint(devidp.TokenRequest{ClientID: "bench", Scopes: []string{"messages:read"}, Subject: fmt.Sprintf("user-%d", i)})
		out[i] = tok
		return err
	})
	return out, err
}

func median(ms []measurement, f func(measurement) float64) float64 {
	vs := make([]float64, len(ms))
	for i, m := range ms {
		vs[i] = f(m)
	}
	return medianOf(vs)
}

func medianOf(vs []float64) float64 {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// pair is a scenario's round and the floor's round just before it.
type pair struct{ floor, m measurement }

func printTable(o options, scenarios []scenario, floors map[string][]measurement, results map[string][]pair) {
	host, _ := os.Hostname()
	fmt.Printf("\n%d cores, %s, ghz %s (one connection) or the in-process driver, %d concurrent calls, %d rounds of %s each, each after a round of its floor (medians)\n\n",
		runtime.NumCPU(), host, ghzVersion, o.concurrency, o.reps, o.round)
	fmt.Println("| scenario | rps | p50 | p99 | CPU/check | CPU × floor (range over rounds) | rps × floor | p99 × floor | client CPU/check |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	row := func(sc scenario, ms []measurement, cpuRatio, rpsRatio, p99Ratio []float64) {
		med := func(f func(measurement) float64) float64 { return median(ms, f) }
		fmt.Printf("| %s: %s | %.0f | %s | %s | %s | %.2f (%.2f–%.2f) | %.2f | %.2f | %s |\n", sc.name, sc.what,
			med(func(m measurement) float64 { return m.rps }),
			round(med(func(m measurement) float64 { return float64(m.p50) })),
			round(med(func(m measurement) float64 { return float64(m.p99) })),
			round(med(func(m measurement) float64 { return float64(m.cpuPerOp) })),
			medianOf(cpuRatio), slices.Min(cpuRatio), slices.Max(cpuRatio), medianOf(rpsRatio), medianOf(p99Ratio),
			round(med(func(m measurement) float64 { return float64(m.clientPerOp) })))
	}
	ones := []float64{1}
	for _, sc := range scenarios {
		if sc.floor != "" {
			continue
		}
		if len(floors[sc.name]) > 0 {
			row(sc, floors[sc.name], ones, ones, ones)
		}
		for _, sc2 := range scenarios {
			if sc2.floor != sc.name {
				continue
			}
			var ms []measurement
			var cpu, rps, p99 []float64
			for _, p := range results[sc2.name] {
				ms = append(ms, p.m)
				cpu = append(cpu, float64(p.m.cpuPerOp)/float64(p.floor.cpuPerOp))
				rps = append(rps, p.m.rps/p.floor.rps)
				p99 = append(p99, float64(p.m.p99)/float64(p.floor.p99))
			}
			row(sc2, ms, cpu, rps, p99)
		}
	}
	fmt.Println()
}

// printIntrospection tabulates what the introspection scenarios asked of the endpoint.
func printIntrospection(scenarios []scenario, results map[string][]pair) {
	var rows []scenario
	for _, sc := range scenarios {
		if sc.endpoint != nil && len(results[sc.name]) > 0 {
			rows = append(rows, sc)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Printf("Introspection endpoint (stand-in, %s a call), medians and (range over rounds):\n\n", introspectionLatency)
	fmt.Println("| scenario | checks/s | p99 | CPU × floor | endpoint calls/s | calls per check | new connections per call |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, sc := range rows {
		var rps, p99, cpu, callsPS, calls, connsPerCall []float64
		for _, p := range results[sc.name] {
			rps = append(rps, p.m.rps)
			p99 = append(p99, float64(p.m.p99))
			cpu = append(cpu, float64(p.m.cpuPerOp)/float64(p.floor.cpuPerOp))
			callsPS = append(callsPS, p.m.callsPerCheck*p.m.rps)
			calls = append(calls, p.m.callsPerCheck)
			if p.m.callsPerCheck > 0 {
				connsPerCall = append(connsPerCall, p.m.connsPerCheck/p.m.callsPerCheck)
			}
		}
		perCall := "—"
		if len(connsPerCall) > 0 {
			perCall = fmt.Sprintf("%.2f (%.2f–%.2f)", medianOf(connsPerCall), slices.Min(connsPerCall), slices.Max(connsPerCall))
		}
		fmt.Printf("| %s | %.0f (%.0f–%.0f) | %s (%s–%s) | %.2f (%.2f–%.2f) | %.0f (%.0f–%.0f) | %.3f (%.3f–%.3f) | %s |\n", sc.name,
			medianOf(rps), slices.Min(rps), slices.Max(rps),
			round(medianOf(p99)), round(slices.Min(p99)), round(slices.Max(p99)),
			medianOf(cpu), slices.Min(cpu), slices.Max(cpu),
			medianOf(callsPS), slices.Min(callsPS), slices.Max(callsPS),
			medianOf(calls), slices.Min(calls), slices.Max(calls), perCall)
	}
	fmt.Println()
}

func round(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Millisecond:
		return d.Round(100 * time.Nanosecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

// memory fills the cache of a fresh service with distinct tokens and reports its RSS.
func memory(ctx context.Context, e *env, o options) error {
	srv, err := e.startAuthz("authz (memory)", "--cache-size", fmt.Sprint(o.memTokens+1000))
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Fprintf(os.Stderr, "minting %d tokens for the memory figure…\n", o.memTokens)
	toks, err := e.mint(o.memTokens)
	if err != nil {
		return err
	}
	rssBefore, _ := srv.rssBytes()
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(toks); i += 8 {
				resp, err := client.Check(ctx, checkRequest("Bearer "+toks[i]))
				if err != nil || resp.GetStatus().GetCode() != 0 {
					errs <- fmt.Errorf("token %d: %v %v", i, err, resp.GetStatus())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	rss, err := srv.rssBytes()
	if err != nil {
		return err
	}
	entries := scrape(srv.admin, "authz_token_cache_entries")
	fmt.Printf("memory: RSS %.1f MiB with %s tokens cached (%.1f MiB before filling the cache; target ≤ 64 MiB)\n",
		float64(rss)/(1<<20), strings.TrimSpace(entries), float64(rssBefore)/(1<<20))
	return nil
}

// fetchProfile saves a CPU profile of the service taken over d.
func fetchProfile(admin, path string, d time.Duration) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, max(1, int(d.Seconds()))))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// freshEvery is how often the working set sends a token never seen before: one call in 200.
const freshEvery = 200

// workingSet mints the working set's tokens and the new ones that trickle in, enough for every
// round at up to 40,000 calls a second.
func (e *env) workingSet(o options) (*tokenMix, error) {
	rounds := float64(2 * (o.reps + 1))
	fresh := int(rounds*o.round.Seconds()*40_000/freshEvery) + 100
	fmt.Fprintf(os.Stderr, "minting %d working-set tokens and %d new ones…\n", o.workingSet, fresh)
	toks, err := e.mint(o.workingSet + fresh)
	if err != nil {
		return nil, err
	}
	return &tokenMix{set: toks[:o.workingSet], fresh: toks[o.workingSet:], freshEvery: freshEvery}, nil
}

// prefill sends every token of the working set once, so that the rounds measure a warm cache.
func prefill(ctx context.Context, srv *server, toks []string) error {
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	var next atomic.Int64
	return parallel(8, func(int) error {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(toks) {
				return nil
			}
			resp, err := client.Check(ctx, checkRequest("Bearer "+toks[i]))
			if err != nil {
				return err
			}
			if resp.GetStatus().GetCode() != 0 {
				return fmt.Errorf("working-set token %d refused: %v", i, resp.GetStatus())
			}
		}
	})
}
