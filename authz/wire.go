package authz

import (
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// wireCodec is the gRPC codec of a server carrying the ext_authz front end: protobuf, except
// that the responses the front end reuses (memoised denials, hot allows) are encoded once
// when they are built instead of on every call — an allow carries about 1 KiB of identity
// headers, and encoding it was a tenth of the service's CPU under load.
type wireCodec struct {
	encoding.CodecV2          // protobuf, for every other message
	encoded          sync.Map // *authv3.CheckResponse → mem.SliceBuffer
}

func newWireCodec() *wireCodec {
	return &wireCodec{CodecV2: encoding.GetCodecV2(grpcproto.Name)}
}

// Marshal returns the stored encoding of a reused response, or encodes v. A stored encoding
// is never written to, and a SliceBuffer's Free does nothing, so one buffer serves every call.
func (c *wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*authv3.CheckResponse); ok {
		if b, ok := c.encoded.Load(r); ok {
			return mem.BufferSlice{b.(mem.SliceBuffer)}, nil
		}
	}
	return c.CodecV2.Marshal(v)
}

// remember encodes r once, for as long as r is reused. r must not change afterwards.
func (c *wireCodec) remember(r *authv3.CheckResponse) {
	if b, err := proto.Marshal(r); err == nil {
		c.encoded.Store(r, mem.SliceBuffer(b))
	}
}

func (c *wireCodec) forget(r *authv3.CheckResponse) { c.encoded.Delete(r) }

// StreamWorkers is how many goroutines serve gRPC streams in ServerOptions, each reused for many
// checks.
const StreamWorkers = 64

// ServerOptions are the gRPC server options s is fastest with; without them it works the same.
//   - The codec sends s's reused responses pre-encoded. It applies to the whole server
//     (health, reflection), where it encodes plain protobuf.
//   - Stream workers: a check runs on a goroutine whose stack has already grown, instead of a
//     fresh goroutine per stream that grows its stack again (a tenth of the CPU of a check
//     that verifies a signature). With every worker busy, gRPC starts a goroutine as usual.
func (s *GRPCServer) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(s.wire), grpc.NumStreamWorkers(StreamWorkers)}
}
