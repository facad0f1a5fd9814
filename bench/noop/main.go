// Command noop is the floor of the load benchmark: an Envoy ext_authz Check server on the same
// gRPC stack as the authz service that allows everything without looking at the request. The
// authz service's cost is reported as a ratio to this one's, measured in the same run.
//
// With --http-addr it also serves the floor of the HTTP decision API: a net/http server that
// answers 200 to every request.
//
// With --response it answers every check with a fixed, pre-encoded response instead (the
// service's own hot allow, captured by the benchmark): the cost of a response that size, with
// no decision made.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
)

type noop struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse // shared: the floor should not even allocate a response
}

func (n noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return n.resp, nil
}

// fixedCodec sends resp as the bytes it was read from, as the service sends its memoised
// responses; anything else is plain protobuf.
type fixedCodec struct {
	encoding.CodecV2
	resp *authv3.CheckResponse
	wire mem.SliceBuffer
}

func (c fixedCodec) Marshal(v any) (mem.BufferSlice, error) {
	if v == any(c.resp) {
		return mem.BufferSlice{c.wire}, nil
	}
	return c.CodecV2.Marshal(v)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	workers := flag.Uint("workers", 0, "gRPC stream workers (0: a goroutine per stream, gRPC's default)")
	respFile := flag.String("response", "", "answer with this encoded CheckResponse (default: an empty allow)")
	httpAddr := flag.String("http-addr", "", "also serve HTTP here, answering 200 to everything")
	flag.Parse()
	if *httpAddr != "" {
		hl, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			log.Fatal(err)
		}
		hs := &http.Server{ReadHeaderTimeout: 5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })}
		go func() { log.Fatal(hs.Serve(hl)) }()
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var opts []grpc.ServerOption
	if *workers > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(*workers)))
	}
	n := noop{resp: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}}
	if *respFile != "" {
		wire, err := os.ReadFile(*respFile)
		if err != nil {
			log.Fatal(err)
		}
		n.resp = &authv3.CheckResponse{}
		if err := proto.Unmarshal(wire, n.resp); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.ForceServerCodecV2(fixedCodec{encoding.GetCodecV2(grpcproto.Name), n.resp, wire}))
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, n)
	reflection.Register(s)
	log.Printf("noop listening on %s", l.Addr())
	log.Fatal(s.Serve(l))
}
