package authzcmd

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

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
}

// The admin listener's own budget: probes and a scraper need a handful of connections.
var adminLimits = connlimit.Limits{Max: 64, PerClient: 32}

// Timeouts of the HTTP listeners: a request's headers, its whole reading (the decision API
// reads no body) and the answer.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	// grpcHandshake bounds a gRPC connection's set-up (TLS and HTTP/2 preface); gRPC's own
	// default is two minutes of a descriptor held by a client that sends nothing.
	grpcHandshake = 10 * time.Second
)

func (l *limits) flags(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxConns, "max-connections", 1024, "connections each decision listener (gRPC, HTTP) holds at once; more are closed as they arrive (the admin listener has its own budget of 64)")
	fs.IntVar(&l.MaxConnsPerClient, "max-connections-per-client", 256, "connections one client address may hold on each decision listener (a proxy's own connections must fit)")
	fs.DurationVar(&l.IdleTimeout, "idle-timeout", 2*time.Minute, "close connections idle this long (HTTP keep-alive; gRPC connections with no call in flight); longer than the proxy's own (nginx: keepalive_timeout 60s)")
	fs.DurationVar(&l.MaxConnAge, "grpc-max-connection-age", 30*time.Minute, "ask gRPC clients to reconnect after this long (GOAWAY, in-flight checks finish), so that load spreads over new replicas")
	fs.IntVar(&l.MaxMessageBytes, "grpc-max-message-bytes", 128<<10, "largest CheckRequest accepted, in bytes (Envoy's requests stay under its 60 KiB header limit; raise it with with_request_body)")
	fs.IntVar(&l.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted on the HTTP decision API, and gRPC metadata, in bytes")
	fs.IntVar(&l.MaxStreams, "grpc-max-streams", 256, "concurrent checks on one gRPC connection (Envoy opens another connection beyond it)")
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
	return errs
}

// grpcOptions bound the gRPC server.
func (l *limits) grpcOptions(grace time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxMessageBytes),
		grpc.MaxHeaderListSize(uint32(l.MaxHeaderBytes)),
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
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes}
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
