package grpcapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/internal/authztest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// encodedLen counts the stored encodings.
func encodedLen(c *wireCodec) int {
	n := 0
	c.encoded.Range(func(any, any) bool { n++; return true })
	return n
}

func TestReusedResponsesAreSentPreEncoded(t *testing.T) {
	e := newEnv(t, nil)
	s := New(e.az)
	tok := "Bearer " + e.mint(t, nil)
	for _, h := range []map[string]string{{"authorization": tok}, nil, {"authorization": tok[:len(tok)-4] + "AAAA"}} {
		resp, err := s.Check(context.Background(), checkRequest("/api/messages", h, false))
		require.NoError(t, err)
		got, err := s.wire.Marshal(resp)
		require.NoError(t, err)
		stored, ok := s.wire.encoded.Load(resp)
		require.True(t, ok, "a reused response (%v) is encoded once", resp.GetStatus())
		require.Len(t, got, 1)
		assert.Same(t, &stored.(mem.SliceBuffer)[0], &got[0].ReadOnlyData()[0], "the stored bytes are what is sent")
		decoded := &authv3.CheckResponse{}
		require.NoError(t, proto.Unmarshal(got.Materialize(), decoded))
		assert.True(t, proto.Equal(resp, decoded), "and they decode to the response")
	}

	fresh := &authv3.CheckResponse{}
	got, err := s.wire.Marshal(fresh)
	require.NoError(t, err)
	assert.Empty(t, got.Materialize(), "any other message is encoded as usual")
}

func TestEncodingsLeaveWithTheirResponses(t *testing.T) {
	s := New(newEnv(t, nil).az)
	allow := func(c *token.Claims, rule string) *authv3.CheckResponse {
		return s.response(&authz.Decision{Outcome: authz.Allow, Claims: c, Rule: rule}, nil)
	}
	first := &token.Claims{Subject: "first"}
	firstResp := allow(first, "a")
	replaced := allow(first, "b")
	require.NotSame(t, firstResp, replaced, "another rule, another response")
	_, ok := s.wire.encoded.Load(firstResp)
	assert.False(t, ok, "a replaced response's encoding is dropped")

	for i := range allowMemoSize + 100 {
		allow(&token.Claims{Subject: fmt.Sprint(i)}, "a")
	}
	assert.Equal(t, allowMemoSize, encodedLen(s.wire), "evicted responses take their encodings along")
	_, ok = s.wire.encoded.Load(replaced)
	assert.False(t, ok)
}

func TestNoAllowsMemoisedWithoutATokenCache(t *testing.T) {
	e := newEnv(t, &authztest.Options{Verifier: uncached})
	s := New(e.az)
	req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + e.mint(t, nil)}, false)
	first, err := s.Check(context.Background(), req)
	require.NoError(t, err)
	second, err := s.Check(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, int32(0), second.GetStatus().GetCode())
	assert.NotSame(t, first, second, "every check verifies and answers afresh")
	assert.Zero(t, encodedLen(s.wire))
}

// TestEncodeResponse: the front end's own encoding of a response decodes to that response, for
// every outcome and for metadata of any shape.
func TestEncodeResponse(t *testing.T) {
	check := func(t *testing.T, r *authv3.CheckResponse) {
		t.Helper()
		b, err := encodeResponse(r)
		want, wantErr := proto.Marshal(r)
		require.Equal(t, wantErr != nil, err != nil, "fails exactly when proto.Marshal does: %v / %v", err, wantErr)
		if err != nil {
			return
		}
		got := &authv3.CheckResponse{}
		require.NoError(t, proto.Unmarshal(b, got))
		assert.True(t, proto.Equal(r, got), "decodes to the response")
		assert.Len(t, b, len(want), "as long as protobuf's own encoding")
	}
	claims := &token.Claims{Subject: "00u1", ClientID: "0oa1", UserID: "00u1", Scopes: []string{"a", "b"}, ID: "AT.1",
		Raw: []byte(`{"sub":"00u1","email":"ada@example.com"}`)}
	// An allow under a lean identity (no x-authz-claims), as the decision makes it.
	e := newEnv(t, &authztest.Options{Policy: "identity: { claims_header: false }\n"})
	lean := e.az.Decide(context.Background(), &authz.Request{Method: "GET", Host: "h", Path: "/",
		Authorization: []string{"Bearer " + e.mint(t, nil)}})
	require.Equal(t, authz.Allow, lean.Outcome)
	for _, d := range []authz.Decision{
		{Outcome: authz.Allow, Claims: claims, Rule: "messages"},
		lean,
		{Outcome: authz.NoCredentials, Reason: token.ErrNoCredentials},
		{Outcome: authz.InvalidToken, Reason: token.ErrExpired},
		{Outcome: authz.InsufficientScope, Reason: policy.ErrInsufficientScope, Claims: claims, Scope: "messages:write", Rule: "write"},
		{Outcome: authz.Unavailable, Reason: token.ErrKeysNotLoaded},
	} {
		t.Run(d.Outcome.String(), func(t *testing.T) {
			check(t, checkResponse(&d, authz.Challenges{Realm: "api", DPoPAlgs: "ES256"}, []string{"x-authz-extra"}))
		})
	}
	t.Run("other metadata", func(t *testing.T) {
		r := checkResponse(&authz.Decision{Outcome: authz.Allow, Claims: claims}, authz.Challenges{Realm: "api"}, nil)
		r.DynamicMetadata.Fields["n"] = structpb.NewNumberValue(1)
		check(t, r)
		r.DynamicMetadata.Fields = map[string]*structpb.Value{"bad": structpb.NewStringValue("\xff")}
		check(t, r)
		r.DynamicMetadata = nil
		check(t, r)
	})
}

func FuzzEncodeResponse(f *testing.F) {
	f.Add("sub", "00u1", "cid", "", 0)
	f.Add("", "\xff", "ü", strings.Repeat("x", 200), 1)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, code int) {
		r := &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code % 17)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				HeadersToRemove: []string{k1}}},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				k1: structpb.NewStringValue(v1), k2: structpb.NewStringValue(v2)}},
		}
		b, err := encodeResponse(r)
		_, wantErr := proto.Marshal(r)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, proto.Marshal's %v", err, wantErr)
		}
		if err != nil {
			return
		}
		got := &authv3.CheckResponse{}
		if err := proto.Unmarshal(b, got); err != nil || !proto.Equal(r, got) {
			t.Fatalf("decoded %v (%v), want %v", got, err, r)
		}
	})
}
