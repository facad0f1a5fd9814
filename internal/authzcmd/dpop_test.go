package authzcmd

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildDPoPMetrics: the in-memory replay store's figures are metrics.
func TestBuildDPoPMetrics(t *testing.T) {
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default"}, env(nil), io.Discard)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	v, err := buildDPoP(c, slog.New(slog.DiscardHandler), reg)
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
