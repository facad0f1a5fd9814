// Package stepup is a route's demand on how, and how recently, the user authenticated (OAuth
// 2.0 Step Up Authentication Challenge, RFC 9470): the accepted authentication context classes
// (the token's acr) and the longest time since the sign-in (its auth_time). It checks verified
// claims against the demand, and says what the challenge names (acr_values, max_age); it knows
// nothing of rules or answers.
package stepup

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/platformauth/envoy-okta-authz/token"
)

// StepUp is a rule's demand. It is immutable once built.
type StepUp struct {
	// ACR are the accepted authentication context classes, any of; empty: any.
	ACR []string
	// MaxAge is the longest time since the user authenticated; zero: any.
	MaxAge time.Duration
}

// acrValue is an acr a challenge can name: acr_values is a quoted, space-separated list.
var acrValue = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`)

// New checks a demand as a policy file writes it (maxAge nil: none) and builds it.
func New(acr []string, maxAge *time.Duration) (*StepUp, []error) {
	s := &StepUp{ACR: acr}
	var errs []error
	for _, v := range acr {
		if !acrValue.MatchString(v) {
			errs = append(errs, fmt.Errorf("acr %q: a value without spaces, quotes or backslashes (it goes in WWW-Authenticate's acr_values)", v))
		}
	}
	if maxAge != nil {
		s.MaxAge = *maxAge
		if d := s.MaxAge; d < time.Second || d%time.Second != 0 {
			errs = append(errs, fmt.Errorf("max_age %s: whole seconds, at least 1s (the challenge names it in seconds)", d))
		}
	}
	return s, errs
}

// MaxAgeSeconds is max_age as the challenge names it (0: none).
func (s *StepUp) MaxAgeSeconds() int { return int(s.MaxAge / time.Second) }

// The reasons a valid token falls short (401 insufficient_user_authentication).
var (
	ErrACR        = &token.Reason{Code: "acr_not_accepted", Description: "A stronger authentication is required for this resource"}
	ErrAuthTooOld = &token.Reason{Code: "authentication_too_old", Description: "A more recent authentication is required for this resource"}
)

// Check: the acr is one of the accepted (exactly); auth_time is present, no older than MaxAge
// and no later than now, each with the leeway the token's own times get. The acr is checked
// first. It returns nil, or the reason and a detail for the log.
func (s *StepUp) Check(c *token.Claims, now time.Time, leeway time.Duration) (*token.Reason, string) {
	if len(s.ACR) > 0 && !slices.Contains(s.ACR, c.ACR) {
		return ErrACR, fmt.Sprintf("acr %q is not one of %q", c.ACR, s.ACR)
	}
	switch {
	case s.MaxAge == 0:
	case c.AuthTime.IsZero():
		return ErrAuthTooOld, "the token has no auth_time (a NumericDate)"
	case now.Sub(c.AuthTime) > s.MaxAge+leeway:
		return ErrAuthTooOld, fmt.Sprintf("auth_time is %s old, more than max_age %s (leeway %s)", now.Sub(c.AuthTime).Round(time.Second), s.MaxAge, leeway)
	case c.AuthTime.After(now.Add(leeway)):
		return ErrAuthTooOld, fmt.Sprintf("auth_time is %s in the future (leeway %s)", c.AuthTime.Sub(now).Round(time.Second), leeway)
	}
	return nil, ""
}
