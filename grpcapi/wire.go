package grpcapi

import (
	"sync"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
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
		b, err := encodeResponse(r)
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	return c.CodecV2.Marshal(v)
}

// remember encodes r once, for as long as r is reused. r must not change afterwards.
func (c *wireCodec) remember(r *authv3.CheckResponse) {
	if b, err := encodeResponse(r); err == nil {
		c.encoded.Store(r, mem.SliceBuffer(b))
	}
}

// encodeResponse is proto.Marshal(r), except for the dynamic metadata: protobuf-go encodes a
// map field through reflection, a copy and an allocation per entry, which made the metadata of
// an allow cost more to encode than the rest of the response. Its Struct of strings is encoded
// here and appended as field 4 (a parser reads fields in any order); anything else in it falls
// back to proto.Marshal. TestEncodeResponse holds the two encodings equal.
func encodeResponse(r *authv3.CheckResponse) ([]byte, error) {
	md := r.GetDynamicMetadata()
	if md == nil || len(r.ProtoReflect().GetUnknown()) > 0 {
		return proto.Marshal(r)
	}
	size := 0
	for k, v := range md.GetFields() {
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok || !utf8.ValidString(k) || !utf8.ValidString(sv.StringValue) {
			return proto.Marshal(r) // which refuses invalid UTF-8 in a string field
		}
		size += protowire.SizeTag(1) + protowire.SizeBytes(mapEntrySize(k, sv.StringValue))
	}
	rest, err := proto.Marshal(&authv3.CheckResponse{Status: r.GetStatus(), HttpResponse: r.HttpResponse})
	if err != nil {
		return nil, err
	}
	const dynamicMetadata = 4 // CheckResponse.dynamic_metadata
	b := make([]byte, 0, len(rest)+protowire.SizeTag(dynamicMetadata)+protowire.SizeBytes(size))
	b = append(b, rest...)
	b = protowire.AppendTag(b, dynamicMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	for k, v := range md.GetFields() {
		s := v.GetStringValue()
		// Struct.fields (1): a map entry {key (1), value (2): Value{string_value (3)}}.
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(mapEntrySize(k, s)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(3)+protowire.SizeBytes(len(s))))
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b, nil
}

// mapEntrySize is the encoded size of a Struct.fields entry holding a string value.
func mapEntrySize(key, value string) int {
	valueSize := protowire.SizeTag(3) + protowire.SizeBytes(len(value))
	return protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(valueSize)
}

func (c *wireCodec) forget(r *authv3.CheckResponse) { c.encoded.Delete(r) }

// Register serves s on gs as envoy.service.auth.v3.Authorization.
func (s *Server) Register(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, s) }

// StreamWorkers is how many goroutines serve gRPC streams in ServerOptions, each reused for many
// checks.
const StreamWorkers = 64

// ServerOptions are the gRPC server options s is fastest with; without them it works the same.
//   - The codec sends s's reused responses pre-encoded. It applies to the whole server
//     (health, reflection), where it encodes plain protobuf.
//   - Stream workers: a check runs on a goroutine whose stack has already grown, instead of a
//     fresh goroutine per stream that grows its stack again (a tenth of the CPU of a check
//     that verifies a signature). With every worker busy, gRPC starts a goroutine as usual.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(s.wire), grpc.NumStreamWorkers(StreamWorkers)}
}
