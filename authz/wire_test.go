package authz

import (
	"context"
	"fmt"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// encodedLen counts the stored encodings.
func encodedLen(c *wireCodec) int {
	n := 0
	c.encoded.Range(func(any, any) bool { n++; return true })
	return n
}

func TestReusedResponsesAreSentPreEncoded(t *testing.T) {
	e := newEnv(t, nil)
	s := NewGRPCServer(e.az)
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
	s := NewGRPCServer(newEnv(t, nil).az)
	allow := func(c *Claims, rule string) *authv3.CheckResponse {
		return s.response(&Decision{Outcome: Allow, Claims: c, Rule: rule}, nil)
	}
	first := &Claims{Subject: "first"}
	firstResp := allow(first, "a")
	replaced := allow(first, "b")
	require.NotSame(t, firstResp, replaced, "another rule, another response")
	_, ok := s.wire.encoded.Load(firstResp)
	assert.False(t, ok, "a replaced response's encoding is dropped")

	for i := range allowMemoSize + 100 {
		allow(&Claims{Subject: fmt.Sprint(i)}, "a")
	}
	assert.Equal(t, allowMemoSize, encodedLen(s.wire), "evicted responses take their encodings along")
	_, ok = s.wire.encoded.Load(replaced)
	assert.False(t, ok)
}

func TestNoAllowsMemoisedWithoutATokenCache(t *testing.T) {
	e := newEnv(t, nil)
	e.v.cache = nil
	s := NewGRPCServer(e.az)
	req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + e.mint(t, nil)}, false)
	first, err := s.Check(context.Background(), req)
	require.NoError(t, err)
	second, err := s.Check(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, int32(0), second.GetStatus().GetCode())
	assert.NotSame(t, first, second, "every check verifies and answers afresh")
	assert.Zero(t, encodedLen(s.wire))
}
