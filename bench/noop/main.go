// Command noop is the floor of the load benchmark: an Envoy ext_authz Check server on the same
// gRPC stack as the authz service that allows everything without looking at the request. The
// authz service's cost is reported as a ratio to this one's, measured in the same run.
package main

import (
	"context"
	"flag"
	"log"
	"net"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

type noop struct {
	authv3.UnimplementedAuthorizationServer
}

// ok is shared: the floor should not even allocate a response.
var ok = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	workers := flag.Uint("workers", 0, "gRPC stream workers (0: a goroutine per stream, gRPC's default)")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var opts []grpc.ServerOption
	if *workers > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(*workers)))
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, noop{})
	reflection.Register(s)
	log.Printf("noop listening on %s", l.Addr())
	log.Fatal(s.Serve(l))
}
