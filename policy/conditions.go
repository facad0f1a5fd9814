package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/policy/expr"
	"github.com/platformauth/envoy-okta-authz/policy/stepup"
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

	// ev are the expression variables, built up front when the policy has expressions (from
	// the arguments of Policy.Input, never from the Input itself, so that a decision's Input
	// stays on its stack).
	ev *expr.Vars
}

// Input is the input of r, whose host (reqhost), methods (Policy.Methods) and canonical path
// (reqpath) the caller read, judged at now with leeway.
func (p *Policy) Input(r *Request, host string, methods []string, path reqpath.Path, now time.Time, leeway time.Duration) Input {
	in := Input{Request: *r, Host: host, Path: path, Now: now, Leeway: leeway}
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

// Vars are the variables of in's expressions read with method and path, and the token's claims
// c when not nil (explain evaluates them one by one).
func (in *Input) Vars(method, path string, c *token.Claims) *expr.Vars {
	v := in.vars(method, path)
	if c != nil {
		setToken(v, c)
	}
	return v
}

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

// isHidden also hides every identity header (x-authz-*, the policy's claim headers): what a
// client sends under those names is a forgery the upstream never gets, not a fact to judge by.
func (p *Policy) isHidden(name string) bool {
	return p.hidden[name] || slices.Contains(hiddenHeaders, name) || p.identityNames.has(name)
}

// Refusal is why a rule refuses a verified token; a nil Reason allows.
type Refusal struct {
	Reason *token.Reason
	// Scope is what the insufficient_scope challenge names; StepUp what the
	// insufficient_user_authentication challenge asks for.
	Scope  string
	StepUp *stepup.StepUp
	// Detail is for logs, never for the client.
	Detail string
}

// Reasons a rule's conditions refuse a valid token (403).
var (
	// ErrConditionUnmet: an expression is false. The description is fixed: the expression is
	// the operator's, never the client's to read.
	ErrConditionUnmet = &token.Reason{Code: "condition_unmet", Description: "The request does not meet a condition of this resource"}
	// ErrConditionError: an expression could not be evaluated (a missing key, a value of
	// another type, the cost limit): the request is refused, never let through.
	ErrConditionError = &token.Reason{Code: "condition_error", Description: "A condition of this resource could not be evaluated"}
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
		if reason, detail := s.Check(c, in.Now, in.Leeway); reason != nil {
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
