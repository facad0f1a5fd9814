// Package policy is the route policy: which rule judges a request, and what that rule demands of
// a verified token. It loads and checks policy files (every mistake reported with its line), and
// chooses rules by the request's Envoy route, host, method and path — judging, besides the
// canonical path, every other way a common upstream may read the request (letter case, a
// trailing slash, ";" parameters, a format suffix, HEAD as GET, method overrides), so that a
// request is judged by every rule it could be served under. It owns the identity configuration
// (which claims an allow forwards, and under which header names), and what else a rule states:
// conditions in CEL (compiled and evaluated by policy/expr, under every reading), a step-up
// demand (policy/stepup) and the places it reads a token from (token.Place).
//
// It trusts the policy file only after loading checks it, and reads requests only through the
// canonical path (internal/reqpath) and host (internal/reqhost) readers. It knows tokens only as
// verified token.Claims, and nothing of how a decision is answered.
package policy
