package authzcmd

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDPoPFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" accepts
	}{
		{"Ed25519 proofs (RFC 9864)", []string{"--dpop-algs", "Ed25519"}, ""},
		{"Ed25519 issuer tokens", []string{"--algs", "Ed25519,EdDSA"}, ""},
		{"Ed448", []string{"--dpop-algs", "Ed448"}, `--dpop-algs: "Ed448" is not a supported algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519)`},
		{"a farther Redis", []string{"--dpop-replay-store-timeout", "1s"}, ""},
		{"a Redis timeout too short to mean anything", []string{"--dpop-replay-store-timeout", "5ms"}, "--dpop-replay-store-timeout 5ms must be between 10ms and 10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(append([]string{"--issuer", "https://idp.example/oauth2/default"}, tt.args...), env(nil), io.Discard)
			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
		})
	}
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default"}, env(map[string]string{"AUTHZ_DPOP_REPLAY_STORE_TIMEOUT": "400ms"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 400*time.Millisecond, c.DPoPStoreTimeout, "the environment twin")
	c, err = parseConfig([]string{"--issuer", "https://idp.example/oauth2/default"}, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []string{"ES256", "RS256", "PS256", "EdDSA", "Ed25519"}, c.DPoPAlgs)
}

// TestBuildDPoPMetrics: the in-memory replay store's figures are metrics.
func TestBuildDPoPMetrics(t *testing.T) {
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default"}, env(nil), io.Discard)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	v, _, err := buildDPoP(c, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	require.NotNil(t, v)
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	assert.ElementsMatch(t, []string{"authz_dpop_replay_entries", "authz_dpop_replay_evicted_total", "authz_dpop_replay_too_old_total"}, names)
}
