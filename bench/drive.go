package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The in-process load driver: what ghz cannot do — several connections with a request drawn per
// call from a distribution over tens of thousands of tokens, and the HTTP decision API. It
// sends pre-encoded requests so that its own cost per call stays small and constant.

// tokenMix picks the token of each call: a working set drawn from a Zipf distribution, and
// now and then a token never sent before.
type tokenMix struct {
	set []string // the working set, most popular first
	// fresh are tokens no round has sent yet, used one in freshEvery calls.
	fresh      []string
	freshEvery int
	next       atomic.Int64 // index of the next fresh token
}

// zipfS is the Zipf exponent: with s = 1.1 over 50,000 tokens the most popular 1,000 carry
// about 60% of the calls — a few busy clients and a long tail of users.
const zipfS = 1.1

// picker returns a function drawing token indexes for one worker: indexes into set, or
// len(set)+i for fresh token i. Without a mix every call sends token 0.
func (m *tokenMix) picker(seed uint64) func() int {
	if m == nil || len(m.set) <= 1 {
		return func() int { return 0 }
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	z := rand.NewZipf(r, zipfS, 1, uint64(len(m.set)-1))
	calls := 0
	return func() int {
		calls++
		if m.freshEvery > 0 && calls%m.freshEvery == 0 {
			if i := m.next.Add(1) - 1; int(i) < len(m.fresh) {
				return len(m.set) + int(i)
			}
		}
		return int(z.Uint64())
	}
}

func (m *tokenMix) all() []string {
	if m == nil {
		return nil
	}
	return append(slices.Clip(m.set), m.fresh...)
}

// envoyCheckRequest is a CheckRequest as Envoy v1.38 sends it for GET /api/messages through
// envoy.yaml's listener (use_remote_address, request ids, tracing headers), with the gRPC
// policy named in the route's context extensions.
func envoyCheckRequest(authorization string) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "api.example.com", ":method": "GET", ":path": "/api/messages", ":scheme": "https",
		"user-agent":               "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"accept":                   "application/json, text/plain, */*",
		"accept-encoding":          "gzip, deflate, br, zstd",
		"accept-language":          "en-GB,en;q=0.9",
		"x-forwarded-for":          "203.0.113.7",
		"x-forwarded-proto":        "https",
		"x-request-id":             "5b0c1c44-6c2b-4f1e-9a0e-2f43c9a1d6b7",
		"x-envoy-external-address": "203.0.113.7",
		"traceparent":              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	if authorization != "" {
		h["authorization"] = authorization
	}
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: addr("203.0.113.7", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: addr("10.0.0.12", 8080)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "13290385409822151394", Method: "GET", Headers: h, Path: "/api/messages",
				Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			}},
		ContextExtensions: map[string]string{"policy": "messages"},
	}}
}

// spliceable encodes an Envoy-shaped request whose token is a placeholder, and returns it with
// the placeholder's offset: any token of the same length written there makes a valid request,
// without encoding one per call.
func spliceable() ([]byte, int, error) {
	placeholder := strings.Repeat("#", opaqueTokenLen)
	b, err := proto.Marshal(envoyCheckRequest("Bearer " + placeholder))
	if err != nil {
		return nil, 0, err
	}
	if bytes.Count(b, []byte(placeholder)) != 1 {
		return nil, 0, errors.New("the placeholder token is not unique in the encoded request")
	}
	return b, bytes.Index(b, []byte(placeholder)), nil
}

// rawCodec sends pre-encoded messages and hands back the response's bytes undecoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// statusCode reads CheckResponse.status.code from an encoded response without decoding the rest.
func statusCode(b []byte) (int64, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType { // status
			st, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			for len(st) > 0 {
				num, typ, n := protowire.ConsumeTag(st)
				if n < 0 {
					return 0, protowire.ParseError(n)
				}
				st = st[n:]
				if num == 1 && typ == protowire.VarintType {
					v, _ := protowire.ConsumeVarint(st)
					return int64(int32(v)), nil
				}
				n = protowire.ConsumeFieldValue(num, typ, st)
				if n < 0 {
					return 0, protowire.ParseError(n)
				}
				st = st[n:]
			}
			return 0, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return 0, nil
}

// load is one kind of traffic the driver sends.
type driverLoad struct {
	proto   string // "grpc" or "http"
	conns   int    // gRPC connections (Envoy opens one per worker thread)
	streams int    // concurrent calls
	mix     *tokenMix
	// single is the token of every call when mix and stream are nil ("" for none).
	single string
	// stream, when set, gives every call a new opaque token, spliced into a pre-encoded
	// request (gRPC only).
	stream *tokenStream
	// wantAllow: every call must be allowed (a refusal is a benchmark failure).
	wantAllow bool

	once    sync.Once
	grpcReq [][]byte // encoded CheckRequests, one per token
	// template is the stream's request, encoded with a placeholder token at tokenAt.
	template []byte
	tokenAt  int
	err      error
}

func (l *driverLoad) tokens() []string {
	if l.mix != nil {
		return l.mix.all()
	}
	return []string{l.single}
}

func (l *driverLoad) prepare() error {
	l.once.Do(func() {
		if l.proto != "grpc" {
			return
		}
		if l.stream != nil {
			l.template, l.tokenAt, l.err = spliceable()
			return
		}
		toks := l.tokens()
		l.grpcReq = make([][]byte, len(toks))
		for i, t := range toks {
			auth := ""
			if t != "" {
				auth = "Bearer " + t
			}
			if l.grpcReq[i], l.err = proto.Marshal(envoyCheckRequest(auth)); l.err != nil {
				return
			}
		}
	})
	return l.err
}

// driveRound sends l to addr for d and returns what it measured; clientCPU is this process's
// CPU time over the round.
func driveRound(ctx context.Context, l *driverLoad, addr string, d time.Duration, seed uint64) (*roundResult, error) {
	if err := l.prepare(); err != nil {
		return nil, err
	}
	call, closeAll, err := l.caller(addr)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	cpuBefore, err := selfCPU()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var wg sync.WaitGroup
	lat := make([][]time.Duration, l.streams)
	errs := make([]error, l.streams)
	start := time.Now()
	for w := range l.streams {
		pick := l.mix.picker(seed*1000 + uint64(w))
		wg.Go(func() {
			for ctx.Err() == nil {
				i := pick()
				t0 := time.Now()
				if err := call(ctx, w, i); err != nil {
					// gRPC may notice the round's deadline before the context does; and the
					// service answers a call it could not finish by the deadline gRPC sent it
					// (503, waiting for an introspection call), which can arrive here before
					// this process's timer has ended the context: the round is over either way.
					if c := status.Code(err); ctx.Err() == nil && time.Now().Before(deadline) && c != codes.DeadlineExceeded && c != codes.Canceled && !errors.Is(err, context.DeadlineExceeded) {
						errs[w] = err
					}
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cpuAfter, err := selfCPU()
	if err != nil {
		return nil, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return nil, errors.New("no call completed")
	}
	r := &roundResult{Count: int64(len(all)), RPS: float64(len(all)) / elapsed.Seconds(), clientCPU: cpuAfter - cpuBefore}
	r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	return r, nil
}

// caller returns the function that makes call number i of worker w, and a cleanup.
func (l *driverLoad) caller(addr string) (func(ctx context.Context, w, i int) error, func(), error) {
	toks := l.tokens()
	switch l.proto {
	case "grpc":
		conns := make([]*grpc.ClientConn, l.conns)
		for c := range conns {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
			if err != nil {
				return nil, nil, err
			}
			conns[c] = conn
		}
		closeAll := func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}
		return func(ctx context.Context, w, i int) error {
			var resp []byte
			var req []byte
			if l.stream != nil {
				req = slices.Clone(l.template)
				copy(req[l.tokenAt:], l.stream.tokens.token(l.stream.next.Add(1)))
			} else {
				req = l.grpcReq[i]
			}
			if err := conns[w%len(conns)].Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", &req, &resp); err != nil {
				return err
			}
			code, err := statusCode(resp)
			if err != nil {
				return err
			}
			if l.wantAllow && code != 0 {
				// Decoded only now, for the reason the service gave.
				var r authv3.CheckResponse
				_ = proto.Unmarshal(resp, &r)
				return fmt.Errorf("token %d refused: code %d, reason %q, %s", i, code, r.GetStatus().GetMessage(),
					r.GetDeniedResponse().GetBody())
			}
			return nil
		}, closeAll, nil
	case "http":
		tr := &http.Transport{MaxIdleConnsPerHost: l.streams, MaxConnsPerHost: l.streams, DisableCompression: true,
			DialContext: (&net.Dialer{}).DialContext}
		client := &http.Client{Transport: tr}
		url := "http://" + addr + "/"
		return func(ctx context.Context, w, i int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			nginxShaped(req.Header, toks[i])
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if l.wantAllow && resp.StatusCode != http.StatusOK {
				return fmt.Errorf("token %d refused: %s", i, resp.Status)
			}
			return nil
		}, tr.CloseIdleConnections, nil
	}
	return nil, nil, fmt.Errorf("unknown protocol %q", l.proto)
}

// nginxShaped sets the headers deploy/nginx/nginx.conf's auth_request subrequest carries: the
// original request's method, URI and host, the scheme, and the client's own headers.
func nginxShaped(h http.Header, token string) {
	h["X-Original-Uri"] = []string{"/api/messages"}
	h["X-Original-Method"] = []string{"GET"}
	h["X-Original-Host"] = []string{"api.example.com"}
	h["X-Forwarded-Proto"] = []string{"https"}
	h["User-Agent"] = []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
	h["Accept"] = []string{"application/json, text/plain, */*"}
	h["Accept-Language"] = []string{"en-GB,en;q=0.9"}
	h["X-Request-Id"] = []string{"5b0c1c44-6c2b-4f1e-9a0e-2f43c9a1d6b7"}
	if token != "" {
		h["Authorization"] = []string{"Bearer " + token}
	}
}

// selfCPU is this process's user+system CPU time.
func selfCPU() (time.Duration, error) { return processCPU(os.Getpid()) }
