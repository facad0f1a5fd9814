package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAuthTime(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":           {},
		"now":        now,
		"15m":        now.Add(-15 * time.Minute),
		"0s":         now,
		"1796069938": time.Unix(1796069938, 0),
	} {
		got, err := parseAuthTime(in, now)
		require.NoError(t, err, in)
		assert.True(t, want.Equal(got), "%q: got %s, want %s", in, got, want)
	}
	for _, in := range []string{"yesterday", "-5m", "-1"} {
		_, err := parseAuthTime(in, now)
		assert.Error(t, err, in)
	}
}
