package stepup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/token"
)

func TestStepUpEdges(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	const leeway = 2 * time.Minute
	s := &StepUp{ACR: []string{"urn:okta:loa:2fa:any", "phr"}, MaxAge: 10 * time.Minute}
	tests := []struct {
		name     string
		acr      string
		authTime time.Time
		want     *token.Reason
	}{
		{"fresh second factor", "urn:okta:loa:2fa:any", now.Add(-time.Minute), nil},
		{"the other accepted acr", "phr", now.Add(-time.Minute), nil},
		{"exactly max_age", "phr", now.Add(-10 * time.Minute), nil},
		{"max_age plus the leeway", "phr", now.Add(-12 * time.Minute), nil},
		{"a second past max_age and leeway", "phr", now.Add(-12*time.Minute - time.Second), ErrAuthTooOld},
		{"no auth_time", "phr", time.Time{}, ErrAuthTooOld},
		{"auth_time within the leeway ahead", "phr", now.Add(time.Minute), nil},
		{"auth_time in the future", "phr", now.Add(3 * time.Minute), ErrAuthTooOld},
		{"password only", "urn:okta:loa:1fa:pwd", now, ErrACR},
		{"no acr", "", now, ErrACR},
		{"acr in another case", "PHR", now, ErrACR},
		{"weak and old: acr first", "urn:okta:loa:1fa:any", now.Add(-time.Hour), ErrACR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, detail := s.Check(&token.Claims{ACR: tt.acr, AuthTime: tt.authTime}, now, leeway)
			assert.Equal(t, tt.want, reason, detail)
			if tt.want != nil {
				assert.NotEmpty(t, detail)
			}
		})
	}
	only := &StepUp{MaxAge: time.Minute}
	reason, _ := only.Check(&token.Claims{AuthTime: now}, now, 0)
	assert.Nil(t, reason, "max_age alone takes any acr")
	only = &StepUp{ACR: []string{"phr"}}
	reason, _ = only.Check(&token.Claims{ACR: "phr"}, now, 0)
	assert.Nil(t, reason, "acr alone needs no auth_time")
}

func TestNew(t *testing.T) {
	ten := 10 * time.Minute
	s, errs := New([]string{"urn:okta:loa:2fa:any"}, &ten)
	require.Empty(t, errs)
	assert.Equal(t, 600, s.MaxAgeSeconds())
	for _, d := range []time.Duration{0, 1500 * time.Millisecond, 500 * time.Millisecond} {
		_, errs = New(nil, &d)
		assert.Len(t, errs, 1, d)
	}
	for _, acr := range []string{"two words", `q"uote`, `back\slash`, ""} {
		_, errs = New([]string{acr}, nil)
		assert.Len(t, errs, 1, acr)
	}
}
