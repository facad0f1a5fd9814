package grpcapi

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type noopServer struct {
	authv3.UnimplementedAuthorizationServer
}

var noopResp = &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}

func (noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return noopResp, nil
}

// benchGRPC measures Check over real gRPC on loopback, many streams on one connection.
func benchGRPC(b *testing.B, srv authv3.AuthorizationServer, req *authv3.CheckRequest) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var opts []grpc.ServerOption
	if gs, ok := srv.(*Server); ok {
		opts = gs.ServerOptions()
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, srv)
	go func() { _ = s.Serve(l) }()
	defer s.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	b.SetParallelism(25)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Check(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGRPCFloor(b *testing.B) {
	benchGRPC(b, noopServer{}, checkRequest("/api/messages", nil, false))
}

func BenchmarkGRPCNoToken(b *testing.B) {
	e := newEnv(b, nil)
	benchGRPC(b, New(e.az), checkRequest("/api/messages", nil, false))
}

func BenchmarkGRPCHot(b *testing.B) {
	e := newEnv(b, nil)
	benchGRPC(b, New(e.az), checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + e.mint(b, nil)}, false))
}
