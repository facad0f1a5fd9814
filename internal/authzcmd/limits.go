package authzcmd

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/platformauth/envoy-okta-authz/internal/connlimit"
)

// limits keep any one client that can reach the ports from taking the service down: every
// listener bounds its connections (in all and per client address, the admin listener on a
// budget of its own so that probes answer under a flood), idle connections are closed, and
// messages and headers are bounded to what proxies send.
type limits struct {
	MaxConns, MaxConnsPerClient int
	IdleTimeout                 time.Duration
	MaxConnAge                  time.Duration
	MaxMessageBytes             int
	MaxHeaderBytes              int
	MaxStreams                  int
	// CheckTimeout bounds one check, its request read included, on either decision API;
	// MaxChecksInFlight the gRPC checks being read or decided at once, over all connections.
	CheckTimeout      time.Duration
	MaxChecksInFlight int
}

// The admin listener's own budget: probes (a new connection each, from the node's address)
// and a scraper need a handful of connections per client, so a client gets few — it takes 32
// addresses to fill the listener, where two took a budget of 64 (32 each) and failed every
// probe — and its idle connections go after adminIdleTimeout.
var adminLimits = connlimit.Limits{Max: 256, PerClient: 8}

const adminIdleTimeout = 10 * time.Second

// Timeouts of the HTTP listeners: a request's headers (its whole reading and the answer are
// bounded by CheckTimeout: the decision API reads no body).
const (
	readHeaderTimeout = 5 * time.Second
	// grpcHandshake bounds a gRPC connection's set-up (TLS and HTTP/2 preface); gRPC's own
	// default is two minutes of a descriptor held by a client that sends nothing.
	grpcHandshake = 10 * time.Second
	// grpcMaxMetadata bounds a gRPC call's metadata, below the HTTP header limit: Envoy sends the
	// request's headers inside the CheckRequest, and its call's own metadata is small.
	grpcMaxMetadata = 16 << 10
	// maxOtherCallsInFlight bounds the gRPC calls in flight that are not checks (health,
	// reflection).
	maxOtherCallsInFlight = 64
)

func (l *limits) flags(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxConns, "max-connections", 1024, "connections each decision listener (gRPC, HTTP) holds at once; more are closed as they arrive (the admin listener has its own budget of 256, 8 per client)")
	fs.IntVar(&l.MaxConnsPerClient, "max-connections-per-client", 256, "connections one client address may hold on each decision listener (a proxy's own connections must fit)")
	fs.DurationVar(&l.IdleTimeout, "idle-timeout", 2*time.Minute, "close connections idle this long (HTTP keep-alive; gRPC connections with no call in flight); longer than the proxy's own (nginx: keepalive_timeout 60s)")
	fs.DurationVar(&l.MaxConnAge, "grpc-max-connection-age", 30*time.Minute, "ask gRPC clients to reconnect after this long (GOAWAY, in-flight checks finish), so that load spreads over new replicas")
	fs.IntVar(&l.MaxMessageBytes, "grpc-max-message-bytes", 128<<10, "largest CheckRequest accepted, in bytes (Envoy's requests stay under its 60 KiB header limit; raise it with with_request_body)")
	fs.IntVar(&l.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted on the HTTP decision API, and gRPC metadata, in bytes")
	fs.IntVar(&l.MaxStreams, "grpc-max-streams", 256, "concurrent checks on one gRPC connection (Envoy opens another connection beyond it)")
	fs.DurationVar(&l.CheckTimeout, "check-timeout", 10*time.Second, "longest a check may take, its request read included, on either decision API (a gRPC call with an earlier deadline of its own keeps it)")
	fs.IntVar(&l.MaxChecksInFlight, "grpc-max-checks-in-flight", 1024, "gRPC checks in flight that may last --check-timeout, over all connections, a quarter of them per client address; a check beyond them has 250 ms (a proxy's takes far less) — each may hold up to --grpc-max-message-bytes")
}

func (l *limits) validate() []error {
	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(l.MaxConns >= 1, "--max-connections %d must be at least 1", l.MaxConns)
	check(l.MaxConnsPerClient >= 1 && l.MaxConnsPerClient <= l.MaxConns, "--max-connections-per-client %d must be between 1 and --max-connections", l.MaxConnsPerClient)
	check(l.IdleTimeout >= time.Second, "--idle-timeout %s must be at least 1s", l.IdleTimeout)
	check(l.MaxConnAge >= time.Minute, "--grpc-max-connection-age %s must be at least 1m", l.MaxConnAge)
	check(l.MaxMessageBytes >= 4<<10 && l.MaxMessageBytes <= 64<<20, "--grpc-max-message-bytes %d must be between 4096 and 67108864", l.MaxMessageBytes)
	check(l.MaxHeaderBytes >= 4<<10 && l.MaxHeaderBytes <= 16<<20, "--max-header-bytes %d must be between 4096 and 16777216", l.MaxHeaderBytes)
	check(l.MaxStreams >= 1 && l.MaxStreams <= 10_000, "--grpc-max-streams %d must be between 1 and 10000", l.MaxStreams)
	check(l.CheckTimeout >= time.Second && l.CheckTimeout <= 10*time.Minute, "--check-timeout %s must be between 1s and 10m", l.CheckTimeout)
	check(l.MaxChecksInFlight >= 1 && l.MaxChecksInFlight <= 1_000_000, "--grpc-max-checks-in-flight %d must be between 1 and 1000000", l.MaxChecksInFlight)
	return errs
}

// grpcOptions bound the gRPC server; calls' counts are metrics on reg.
func (l *limits) grpcOptions(grace time.Duration, reg prometheus.Registerer) []grpc.ServerOption {
	calls := newCallLimiter(l.CheckTimeout, l.MaxChecksInFlight, reg)
	return []grpc.ServerOption{
		grpc.InTapHandle(calls.tap),
		grpc.ChainUnaryInterceptor(calls.unary),
		grpc.MaxRecvMsgSize(l.MaxMessageBytes),
		grpc.MaxHeaderListSize(uint32(min(l.MaxHeaderBytes, grpcMaxMetadata))),
		// Also what grpc-go's mitigation of rapid resets (CVE-2023-44487) counts against.
		grpc.MaxConcurrentStreams(uint32(l.MaxStreams)),
		grpc.ConnectionTimeout(grpcHandshake),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.IdleTimeout,
			MaxConnectionAge:      l.MaxConnAge,
			MaxConnectionAgeGrace: grace,
			// Ping a connection quiet for a minute; one that does not answer is dead and
			// closed, instead of holding its descriptor.
			Time:    time.Minute,
			Timeout: 20 * time.Second,
		}),
	}
}

// httpServer is an HTTP server with the limits.
func (l *limits) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: l.CheckTimeout,
		WriteTimeout: l.CheckTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes}
}

// adminServer is the admin listener's HTTP server: the same limits, idle connections closed
// sooner.
func (l *limits) adminServer(h http.Handler) *http.Server {
	s := l.httpServer(h)
	s.IdleTimeout = min(l.IdleTimeout, adminIdleTimeout)
	return s
}

// decision returns a decision listener's connection limits.
func (l *limits) decision() connlimit.Limits {
	return connlimit.Limits{Max: l.MaxConns, PerClient: l.MaxConnsPerClient}
}

// limitedListeners returns the three listeners wrapped, and exposes their counts as metrics on
// reg: authz_connections_open{listener} and authz_connections_refused_total{listener,reason}.
// ls itself is left as it is: its owner (a test, or main) may still read its addresses.
func limitedListeners(in *listeners, l *limits, reg prometheus.Registerer) *listeners {
	ls := *in
	wrap := func(name string, raw net.Listener, lim connlimit.Limits) net.Listener {
		w := connlimit.Wrap(raw, lim)
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authz_connections_open", Help: "Connections open, by listener (grpc, http, admin).",
				ConstLabels: prometheus.Labels{"listener": name}}, func() float64 { return float64(w.Stats().Open) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authz_connections_refused_total",
				Help:        "Connections closed on arrival because the listener (max) or the client (per_client) held its limit.",
				ConstLabels: prometheus.Labels{"listener": name, "reason": "max"}}, func() float64 { return float64(w.Stats().RefusedMax) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authz_connections_refused_total",
				Help:        "Connections closed on arrival because the listener (max) or the client (per_client) held its limit.",
				ConstLabels: prometheus.Labels{"listener": name, "reason": "per_client"}}, func() float64 { return float64(w.Stats().RefusedPerClient) }),
		)
		return w
	}
	ls.grpc = wrap("grpc", ls.grpc, l.decision())
	ls.http = wrap("http", ls.http, l.decision())
	ls.admin = wrap("admin", ls.admin, adminLimits)
	return &ls
}

// callLimiter bounds how long gRPC calls live, from the moment their headers arrive. grpc-go
// reads a call's request before any interceptor runs, and only the client's own deadline bounds
// that wait: a client that opens streams and never finishes their requests would hold each
// one's buffers (up to the message and metadata limits) for as long as the connection lives.
// So every call gets a deadline: CheckTimeout while fewer calls than the cap are in flight (in
// all, and a quarter of it per client address; other calls than checks on a budget of their
// own), overCapWait beyond it. Nothing is refused: a proxy sends the request with the headers
// and a decision takes microseconds, so however many calls hostile clients hold open, a proxy's
// checks go through; the calls beyond the cap are gone within overCapWait, whatever they do.
// (A tap that returns an error, or a context already done, takes a path in grpc-go 1.84 that
// never cancels the stream's own context: refusing there leaks.)
type callLimiter struct {
	timeout time.Duration
	slots   [2]*connlimit.Slots // calls within the cap: checks, others
	overCap [2]atomic.Uint64    // calls beyond it: checks, others
}

const (
	checkMethod       = "/envoy.service.auth.v3.Authorization/Check"
	healthWatchMethod = "/grpc.health.v1.Health/Watch"
	// overCapWait is how long a call beyond the cap lives: far longer than a proxy's check takes,
	// and long enough that its deadline has not passed when grpc-go looks at it, a moment after
	// the tap.
	overCapWait = 250 * time.Millisecond
)

func newCallLimiter(timeout time.Duration, maxChecks int, reg prometheus.Registerer) *callLimiter {
	c := &callLimiter{timeout: timeout, slots: [2]*connlimit.Slots{
		connlimit.NewSlots(connlimit.Limits{Max: maxChecks, PerClient: max(1, maxChecks/4)}),
		connlimit.NewSlots(connlimit.Limits{Max: maxOtherCallsInFlight, PerClient: maxOtherCallsInFlight / 4}),
	}}
	for i, kind := range []string{"check", "other"} {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authz_grpc_calls_in_flight",
				Help:        "gRPC calls in flight within --grpc-max-checks-in-flight (each may last --check-timeout), by kind (check, other).",
				ConstLabels: prometheus.Labels{"kind": kind}}, func() float64 { return float64(c.slots[i].Stats().Open) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authz_grpc_calls_over_cap_total",
				Help:        "gRPC calls that arrived beyond --grpc-max-checks-in-flight (in all or from their client) and had 250 ms, by kind (check, other).",
				ConstLabels: prometheus.Labels{"kind": kind}}, func() float64 { return float64(c.overCap[i].Load()) }),
		)
	}
	return c
}

// tap runs as a call's headers arrive: it takes a slot if one is free and gives the call its
// deadline; the slot is given back when the call's context ends (the transport cancels it when
// the stream closes, however it closes).
func (c *callLimiter) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	kind := 1
	if info.FullMethodName == checkMethod {
		kind = 0
	}
	var client netip.Addr
	if p, ok := peer.FromContext(ctx); ok {
		client = connlimit.ClientAddr(p.Addr)
	}
	s := c.slots[kind]
	if !s.Take(client) {
		c.overCap[kind].Add(1)
		ctx, cancel := context.WithTimeout(ctx, overCapWait)
		context.AfterFunc(ctx, cancel)
		return ctx, nil
	}
	if info.FullMethodName == healthWatchMethod {
		context.AfterFunc(ctx, func() { s.Release(client) }) // a Watch is meant to last
		return ctx, nil
	}
	// The deadline's timer goes with the call: grpc-go cancels the stream's context, this
	// context's parent, when the call ends. The slot is given back by the unary interceptor once
	// the handler returns — without a goroutine — or, for a call that never gets there (its
	// request never came, it was reset, an unknown method, a stream), when its context ends.
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	slot := &callSlot{Context: ctx, cancel: cancel, release: func() { s.Release(client) }}
	slot.stop = context.AfterFunc(ctx, slot.release)
	return slot, nil
}

// callSlot is a call's context within the cap, carrying how its slot is given back.
type callSlot struct {
	context.Context
	cancel  context.CancelFunc // (called by the parent's end; kept to say so)
	stop    func() bool        // stops the release on the context's end
	release func()
}

type callSlotKey struct{}

func (c *callSlot) Value(key any) any {
	if key == (callSlotKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// unary gives a unary call's slot back as soon as its handler returns (a context.AfterFunc
// would start a goroutine per call: a tenth of the floor's CPU per check).
func (c *callLimiter) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if cs, ok := ctx.Value(callSlotKey{}).(*callSlot); ok && cs.stop() {
		defer cs.release()
	}
	return handler(ctx, req)
}
