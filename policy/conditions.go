package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/policy/expr"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Input is a request as the rules read it, for one decision: Policy.Input sets it up, and
// EachReading reads it under each reading.
//
// It holds the request and its methods by value: an Input on a decision's stack must not point
// at other variables of that stack, since the expression variables it leads to are on the heap
// (and escape analysis would then move them there too).
type Input struct {
	Request Request
	Host    string // the host the proxy routes on, without the port (reqhost)
	// methods are every method the upstream may run the request as (Policy.Methods), the first
	// n of them.
	methods  [MaxMethods + 1]string
	nMethods int
	Path     reqpath.Path
	// Now is the decision's clock and Leeway the clock skew allowed on a token's times (read
	// when the policy NeedsClock).
	Now    time.Time
	Leeway time.Duration

	policy *Policy
	// ev are the expression variables, built up front when the policy has expressions (from
	// the arguments of Policy.Input, never from the Input itself, so that a decision's Input
	// stays on its stack).
	ev *expr.Vars
}

// Input is the input of r, whose host (reqhost), methods (Policy.Methods) and canonical path
// (reqpath) the caller read, judged at now with leeway.
func (p *Policy) Input(r *Request, host string, methods []string, path reqpath.Path, now time.Time, leeway time.Duration) Input {
	in := Input{Request: *r, Host: host, Path: path, Now: now, Leeway: leeway, policy: p}
	in.nMethods = copy(in.methods[:], methods)
	if p.clock {
		in.ev = &expr.Vars{Host: host, ContextExtensions: r.ContextExtensions, Now: now, Hidden: p.isHidden}
		if r.Headers != nil {
			in.ev.Headers = r.Headers
		}
	}
	return in
}

// Methods are every method the upstream may run the request as, its own first.
func (in *Input) Methods() []string { return in.methods[:in.nMethods] }

// vars are the expression variables of in read with method and path.
func (in *Input) vars(method, path string) *expr.Vars {
	v := in.ev
	if v == nil { // a policy without expressions never asks
		v = &expr.Vars{}
	}
	v.Method, v.Path = method, path
	return v
}

// hiddenHeaders are never among an expression's request.headers: the credentials (rules add the
// headers they read a token from), and the headers that carry the raw request target, query
// string and any token in it included (nginx's, Traefik's and Envoy's).
var hiddenHeaders = []string{"authorization", "proxy-authorization", "dpop", "cookie",
	"x-original-uri", "x-forwarded-uri", "x-envoy-original-path"}

func (p *Policy) isHidden(name string) bool {
	return p.hidden[name] || slices.Contains(hiddenHeaders, name)
}

// Refusal is why a rule refuses a verified token; a nil Reason allows.
type Refusal struct {
	Reason *token.Reason
	// Scope is what the insufficient_scope challenge names; StepUp what the
	// insufficient_user_authentication challenge asks for.
	Scope  string
	StepUp *StepUp
	// Detail is for logs, never for the client.
	Detail string
}

// Reasons a rule's conditions refuse a valid token (403), and its step-up requirement (401).
var (
	// ErrConditionUnmet: an expression is false. The description is fixed: the expression is
	// the operator's, never the client's to read.
	ErrConditionUnmet = &token.Reason{Code: "condition_unmet", Description: "The request does not meet a condition of this resource"}
	// ErrConditionError: an expression could not be evaluated (a missing key, a value of
	// another type, the cost limit): the request is refused, never let through.
	ErrConditionError = &token.Reason{Code: "condition_error", Description: "A condition of this resource could not be evaluated"}
	ErrACR            = &token.Reason{Code: "acr_not_accepted", Description: "A stronger authentication is required for this resource"}
	ErrAuthTooOld     = &token.Reason{Code: "authentication_too_old", Description: "A more recent authentication is required for this resource"}
)

// Judge applies rule's requirements to verified claims, in the order a request meets them:
// issuer, audience, scopes and claims, the conditions (under every reading that selects the
// rule, when one reads the reading's method or path), then step-up — a user who may not use
// the resource at all is not asked to authenticate again first.
func (p *Policy) Judge(rule *Rule, c *token.Claims, in *Input) Refusal {
	if reason, scope, detail := rule.Check(c); reason != nil {
		return Refusal{Reason: reason, Scope: scope, Detail: detail}
	}
	if len(rule.Conditions) > 0 {
		if r := p.judgeConditions(rule, c, in); r.Reason != nil {
			return r
		}
	}
	if s := rule.StepUp; s != nil {
		if reason, detail := s.check(c, in.Now, in.Leeway); reason != nil {
			return Refusal{Reason: reason, StepUp: s, Detail: detail}
		}
	}
	return Refusal{}
}

func (p *Policy) judgeConditions(rule *Rule, c *token.Claims, in *Input) Refusal {
	judge := func(method, path string) Refusal {
		v := in.vars(method, path)
		setToken(v, c)
		for i, cond := range rule.Conditions {
			switch ok, err := cond.Eval(v); {
			case err != nil:
				return Refusal{Reason: ErrConditionError, Detail: fmt.Sprintf("require.cel[%d] %s under %s %s: %v", i, cond.Source(), method, path, err)}
			case !ok:
				return Refusal{Reason: ErrConditionUnmet, Detail: fmt.Sprintf("require.cel[%d] %s is false under %s %s", i, cond.Source(), method, path)}
			}
		}
		return Refusal{}
	}
	if !slices.ContainsFunc(rule.Conditions, (*expr.Program).ReadsReading) {
		return judge(in.methods[0], in.Path.Canonical)
	}
	var out Refusal
	p.EachReading(in, func(m string, rd reqpath.Reading, r *Rule, _ error) {
		if r == rule && out.Reason == nil {
			out = judge(m, rd.Path)
		}
	})
	return out
}

// setToken gives v the token's values; its claims decoded once per token (the claims are
// shared through the token cache).
func setToken(v *expr.Vars, c *token.Claims) {
	ec, ok := c.Values.Load().(*expr.Claims)
	if !ok {
		ec = expr.NewClaims(c.Raw)
		c.Values.Store(ec)
	}
	v.Claims, v.Scopes, v.Issuer, v.ClientID, v.Subject = ec, c.Scopes, c.IssuerName, c.ClientID, c.Subject
}

// StepUp is a rule's demand on how and how recently the user authenticated (RFC 9470).
type StepUp struct {
	// ACR are the accepted authentication context classes (acr), any of; empty: any.
	ACR []string
	// MaxAge is the longest time since the user authenticated (auth_time); zero: any.
	MaxAge time.Duration
}

// MaxAgeSeconds is max_age as the challenge names it (0: none).
func (s *StepUp) MaxAgeSeconds() int { return int(s.MaxAge / time.Second) }

// check: the acr is one of the accepted; auth_time is present, no older than MaxAge and no
// later than now, each with the leeway the token's own times get.
func (s *StepUp) check(c *token.Claims, now time.Time, leeway time.Duration) (*token.Reason, string) {
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

// ConditionValue is one expression's value for one reading of a request (explain).
type ConditionValue struct {
	Rule, Where string // where: "match.cel[i]" or "require.cel[i]"
	Source      string
	Method      string
	Path        string
	Value       bool
	Err         error
	// NotEvaluated says why a condition had no value (no verified token for require.cel).
	NotEvaluated string
}

// Conditions evaluates, under each reading of in's request, the match expressions of every rule
// (why a rule did or did not match) and the conditions of the rule the reading selects, with
// verified claims c (nil: not evaluated); an expression that reads neither the reading's method
// nor its path is evaluated once.
func (p *Policy) Conditions(in *Input, c *token.Claims) []ConditionValue {
	var out []ConditionValue
	seen := map[string]bool{}
	add := func(rule *Rule, where string, prg *expr.Program, m, path string, require bool) {
		if !prg.ReadsReading() {
			m, path = in.methods[0], in.Path.Canonical
		}
		if key := fmt.Sprint(rule.Name, where, m, path); !seen[key] {
			seen[key] = true
			cv := ConditionValue{Rule: rule.Name, Where: where, Source: prg.Source(), Method: m, Path: path}
			v := in.vars(m, path)
			switch {
			case !require:
				cv.Value, cv.Err = prg.Eval(v)
			case c == nil:
				cv.NotEvaluated = "no verified token"
			default:
				setToken(v, c)
				cv.Value, cv.Err = prg.Eval(v)
			}
			out = append(out, cv)
		}
	}
	p.EachReading(in, func(m string, rd reqpath.Reading, selected *Rule, _ error) {
		for _, rule := range p.Rules {
			for i, prg := range rule.MatchCEL {
				add(rule, fmt.Sprintf("match.cel[%d]", i), prg, m, rd.Path, false)
			}
		}
		for i, prg := range selected.Conditions {
			add(selected, fmt.Sprintf("require.cel[%d]", i), prg, m, rd.Path, true)
		}
	})
	return out
}
