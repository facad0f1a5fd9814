package authzcmd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/policy/expr"
	"github.com/platformauth/envoy-okta-authz/policy/stepup"
	"github.com/platformauth/envoy-okta-authz/token"
)

// explainRequest is what `authz explain` asks about.
type explainRequest struct {
	Method, Host, Path, RoutePolicy string
	// URL, when given, sets Scheme, Host and Path at once.
	URL, Scheme string
	// DPoP is a proof: the token is then presented with the DPoP scheme.
	DPoP string
	// ClientCert is a PEM file's path, read into clientCert by resolve.
	ClientCert, clientCert string
	// Headers are the request's other headers ("Name: value", repeatable): what conditions
	// read, and a token in a cookie or a header of its own.
	Headers headerFlags
}

// headerFlags is the repeatable --header flag, kept as an http.Header.
type headerFlags http.Header

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q is not Name: value", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

// Values and Each read the headers by lower-case name, as the front ends give them.
func (h headerFlags) Values(name string) []string { return http.Header(h).Values(name) }

func (h headerFlags) Each(fn func(name, value string)) {
	for k, vs := range h {
		for _, v := range vs {
			fn(strings.ToLower(k), v)
		}
	}
}

// resolve applies --url and reads --client-cert.
func (r *explainRequest) resolve() error {
	r.Scheme = "https"
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("--url %q must be an absolute http(s) URL", r.URL)
		}
		r.Scheme, r.Host, r.Path = u.Scheme, u.Host, u.RequestURI()
	}
	if r.ClientCert != "" {
		pem, err := os.ReadFile(r.ClientCert)
		if err != nil {
			return fmt.Errorf("--client-cert: %w", err)
		}
		r.clientCert = string(pem)
	}
	return nil
}

// checkSteps are the checks of a decision in the order the verifier and the policy make them,
// each with the reasons that mean it failed. explain marks the steps before the failing one as
// passed and those after it as not reached: it reads the real decision, it does not re-decide.
var checkSteps = []struct {
	name    string
	reasons []*authz.Reason
}{
	{"path canonical and unambiguous", append([]*authz.Reason{authz.ErrPathRefused}, authz.PathReasons...)},
	{"host a valid host[:port]", []*authz.Reason{authz.ErrInvalidHost}},
	{"at most eight methods named (overrides)", []*authz.Reason{policy.ErrMethodOverrides}},
	{"one Authorization header", []*authz.Reason{authz.ErrMultipleCredentials}},
	{"one token, in one of the places the rules read", []*authz.Reason{token.ErrMultipleTokens, token.ErrEncodedTokenParameter}},
	{"rule: match conditions (match.cel) evaluated", nil},
	{"access token present (Bearer or DPoP scheme)", []*authz.Reason{token.ErrNoCredentials}},
	{"token well-formed (compact JWS, ≤ 16 KiB; or opaque, when introspected)", []*authz.Reason{token.ErrMalformed, token.ErrTooLarge}},
	{"claim names unambiguous", []*authz.Reason{token.ErrAmbiguousClaims}},
	{"no token-named keys (jku, x5u, jwk, x5c), no crit", []*authz.Reason{token.ErrForbiddenHdr}},
	{"iss is a configured issuer", []*authz.Reason{token.ErrIssuer}},
	{"alg allowed (header and key)", []*authz.Reason{token.ErrAlgorithm}},
	{"typ at+jwt (when the issuer requires it)", []*authz.Reason{token.ErrTokenType}},
	{"kid present", []*authz.Reason{token.ErrNoKeyID}},
	{"key set loaded", []*authz.Reason{token.ErrKeysNotLoaded}},
	{"kid known to the issuer", []*authz.Reason{token.ErrUnknownKey, token.ErrKeyNotFetched}},
	{"signature", []*authz.Reason{token.ErrSignature}},
	{"aud accepted", []*authz.Reason{token.ErrAudience}},
	{"exp present and not past", []*authz.Reason{token.ErrNoExpiry, token.ErrExpired}},
	{"nbf not in the future", []*authz.Reason{token.ErrNotYetValid}},
	{"iat not in the future", []*authz.Reason{token.ErrIssuedInFuture}},
	{"cid allowed", []*authz.Reason{token.ErrClientID}},
	{"introspection: the issuer answers", []*authz.Reason{token.ErrIntrospectionUnavailable}},
	{"introspection: active", []*authz.Reason{token.ErrTokenInactive}},
	{"introspection: an access token", []*authz.Reason{token.ErrNotAccessToken}},
	{"token binding (cnf) understood", []*authz.Reason{authz.ErrUnknownConfirmation}},
	{"DPoP proof: one, typ, alg, public jwk, signature, jti, htm, htu, iat, ath", proofReasons(false)},
	{"token presented as its binding asks (DPoP key = cnf.jkt)", []*authz.Reason{authz.ErrDPoPBoundAsBearer, authz.ErrNotDPoPBound, authz.ErrDPoPKeyMismatch}},
	{"client certificate = cnf.x5t#S256 (certificate-bound tokens)", []*authz.Reason{authz.ErrCertificateBinding}},
	{"DPoP proof not used before", proofReasons(true)},
	{"rule: sender-constrained token", []*authz.Reason{authz.ErrSenderConstrained}},
	{"rule: issuer", []*authz.Reason{policy.ErrIssuerNotAllowed}},
	{"rule: audience", []*authz.Reason{policy.ErrAudienceForRoute}},
	{"rule: scopes", []*authz.Reason{policy.ErrInsufficientScope}},
	{"rule: claims", []*authz.Reason{policy.ErrClaimMismatch}},
	{"rule: conditions (require.cel)", []*authz.Reason{policy.ErrConditionUnmet, policy.ErrConditionError}},
	{"rule: step-up (acr, auth_time within max_age)", []*authz.Reason{stepup.ErrACR, stepup.ErrAuthTooOld}},
}

// proofReasons are the DPoP proof reasons about replay (the proof seen before, or the replay
// store unable to say), or all the others.
func proofReasons(replay bool) []*authz.Reason {
	var out []*authz.Reason
	for _, r := range authz.ProofReasons {
		if (r.Code == dpop.ErrReplay.Code || r.Code == dpop.ErrStoreUnavailable.Code) == replay {
			out = append(out, r)
		}
	}
	return out
}

// explain prints why a token would be allowed or denied for a request: the decoded header and
// claims, each check, the matched rule and the decision. It returns the exit status: 0 allow,
// 1 deny.
func explain(ctx context.Context, c *config, token string, req explainRequest, out io.Writer) int {
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(token), "Bearer "), "DPoP "))
	if req.Host == "" {
		fmt.Fprintf(out, "Request:  %s %s", req.Method, req.Path) // no host given: nothing to show for it
	} else {
		fmt.Fprintf(out, "Request:  %s %s://%s%s", req.Method, req.Scheme, req.Host, req.Path)
	}
	if req.RoutePolicy != "" {
		fmt.Fprintf(out, "  (Envoy policy %q)", req.RoutePolicy)
	}
	fmt.Fprintln(out)
	printDecoded(out, token)

	// explain must not consume the proof in a shared replay store.
	c.DPoPReplayStore = "memory"
	reg := prometheus.NewRegistry()
	az, sets, stop, err := buildAuthorizer(c, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		fmt.Fprintf(out, "configuration: %v\n", err)
		return 2
	}
	defer func() { _ = stop() }()
	fmt.Fprintln(out, "\nIssuers:")
	for i, keys := range sets {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := keys.Refresh(rctx)
		cancel()
		name := az.IssuerNames()[i]
		if err != nil {
			fmt.Fprintf(out, "  %-10s UNREACHABLE: %v\n             the signature cannot be verified\n", name, err)
			if c.Dev {
				fmt.Fprintf(out, "             with --dev, a dev issuer must be running at %s: go run ./cmd/devstack,\n"+
					"             go run ./cmd/authz --dev or go run ./cmd/devidp\n", c.Issuer)
			}
			continue
		}
		fmt.Fprintf(out, "  %-10s keys loaded: %s\n", name, strings.Join(keys.KeyIDs(), ", "))
	}

	r := &authz.Request{Method: req.Method, Host: req.Host, Path: req.Path, Scheme: req.Scheme,
		ClientCert: req.clientCert, ContextExtensions: map[string]string{}, Headers: req.Headers,
		Authorization: req.Headers.Values("Authorization")}
	if req.RoutePolicy != "" {
		r.ContextExtensions["policy"] = req.RoutePolicy
	}
	printReadings(out, az.Policy(), r)
	switch {
	case token != "" && req.DPoP != "":
		r.Authorization, r.DPoP = []string{"DPoP " + token}, []string{req.DPoP}
	case token != "":
		r.Authorization = []string{"Bearer " + token}
	}
	d := az.Decide(ctx, r)
	decided := d
	if d.WouldBe != nil {
		decided = *d.WouldBe
	}

	fmt.Fprintln(out, "\nChecks:")
	reached := true
	for _, step := range checkSteps {
		failed := decided.Reason != nil && slices.Contains(step.reasons, decided.Reason)
		if step.reasons == nil { // the match conditions: their error is require.cel's reason too
			failed = decided.Reason == policy.ErrConditionError && strings.HasPrefix(decided.Detail, "match.cel")
		}
		mark := "pass"
		switch {
		case !reached:
			mark = "not reached"
		case failed:
			mark = "FAIL"
			reached = false
		}
		fmt.Fprintf(out, "  %-12s %s\n", mark, step.name)
		if failed && decided.Detail != "" {
			fmt.Fprintf(out, "               %s\n", decided.Detail)
		}
	}

	printConditions(out, az, r, decided.Claims)
	printIntrospection(ctx, out, c, sets, token, introspected(reg))
	fmt.Fprintf(out, "\nRule:     %s\n", d.Rule)
	if d.WouldBe != nil {
		fmt.Fprintf(out, "Dry run:  would be %s (%d), allowed because the rule is in dry-run mode\n",
			d.WouldBe.Outcome, d.WouldBe.HTTPStatus())
	}
	fmt.Fprintf(out, "Decision: %s, HTTP %d\n", d.Outcome, d.HTTPStatus())
	if d.Scheme != "" {
		fmt.Fprintf(out, "Scheme:   %s\n", d.Scheme)
	}
	for _, h := range d.ClientHeaders(az.Challenges()) {
		if h.Name == "www-authenticate" || h.Name == "retry-after" {
			fmt.Fprintf(out, "          %s: %s\n", h.Name, h.Value)
		}
	}
	upstream := d.UpstreamHeaders()
	for _, h := range upstream {
		if h.Name == policy.HeaderClaims {
			fmt.Fprintf(out, "          upstream %s: (the verified payload, base64url, %d bytes)\n", h.Name, len(h.Value))
			continue
		}
		fmt.Fprintf(out, "          upstream %s: %s\n", h.Name, h.Value)
	}
	if d.Outcome == authz.Allow {
		if rm := d.RemovedHeaders(upstream, nil); len(rm) > 0 {
			fmt.Fprintf(out, "          upstream loses: %s\n", strings.Join(rm, ", "))
		}
	}
	if d.Outcome == authz.Allow {
		return 0
	}
	return 1
}

// printIntrospection shows what --issuer's introspection endpoint says of the token (its answer,
// which holds no secret of the service's), when introspection is on and the decision asked the
// endpoint: explain sends a token where the service would, and nowhere else (a JWT under
// opaque, or one that failed local verification, never reaches the issuer).
func printIntrospection(ctx context.Context, out io.Writer, c *config, sets []*jwks.Set, tok string, asked bool) {
	in := c.Introspection
	if tok == "" || c.Issuer == "" || len(sets) == 0 || in == nil || in.Mode == "" || in.Mode == string(token.IntrospectOff) {
		return
	}
	fmt.Fprintf(out, "\nIntrospection (--introspection %s):\n", in.Mode)
	if !asked {
		fmt.Fprintln(out, "  not asked: the service sends this token nowhere (a JWT under opaque, or one local verification refused)")
		return
	}
	intro, err := buildIntrospection("default", in, sets[0], slog.New(slog.DiscardHandler), nil)
	if err != nil {
		fmt.Fprintf(out, "  configuration: %v\n", err)
		return
	}
	r, err := intro.Client.Introspect(ctx, tok)
	switch {
	case err != nil:
		fmt.Fprintf(out, "  no answer: %v\n", err)
	case !r.Active:
		fmt.Fprintln(out, "  inactive (revoked, expired or unknown to the issuer)")
	default:
		fmt.Fprintf(out, "  active: %s\n", bytes.TrimSpace(r.Body))
	}
}

// introspected reports whether the decision asked --issuer's introspection endpoint (or its
// cache), from the metrics explain's service registered.
func introspected(reg prometheus.Gatherer) bool {
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != "authz_introspection_cache_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "issuer" && l.GetValue() == "default" && m.GetCounter().GetValue() > 0 {
					return true
				}
			}
		}
	}
	return false
}

// printReadings shows the canonical path and every reading of the request with the rule it
// selects: the decision needs each of those rules to allow.
func printReadings(out io.Writer, p *policy.Policy, r *authz.Request) {
	canonical, readings, err := p.Explain(r.Route(), time.Now())
	fmt.Fprintln(out, "\nPath:")
	if err != nil {
		fmt.Fprintf(out, "  REFUSED: %v (400 invalid_request: upstreams would read it differently)\n", err)
		return
	}
	fmt.Fprintf(out, "  canonical  %s\n", canonical)
	for i, rd := range readings {
		var how []string
		if rd.Fold {
			how = append(how, "case-folded")
		}
		if rd.NoTrailingSlash {
			how = append(how, "without trailing slash")
		}
		if rd.NoParameters {
			how = append(how, "without ;parameters")
		}
		if rd.NoSuffix {
			how = append(how, "without format suffix")
		}
		if rd.Method != readings[0].Method {
			how = append(how, "HEAD runs the GET handler")
		}
		label := "  read as  "
		if i == 0 {
			label = "  judged as"
		}
		fmt.Fprintf(out, "%s %s %s → rule %s", label, rd.Method, rd.Path, rd.Rule)
		if len(how) > 0 {
			fmt.Fprintf(out, "  (%s)", strings.Join(how, ", "))
		}
		fmt.Fprintln(out)
	}
}

// printConditions shows the value of every CEL expression the request meets, under each
// reading of it: every rule's match.cel (why a rule did or did not match), and the require.cel
// of the rule the reading selects, with the verified claims (none: not evaluated). An
// expression that reads neither the reading's method nor its path is shown once.
func printConditions(out io.Writer, az *authz.Authorizer, r *authz.Request, claims *token.Claims) {
	p := az.Policy()
	in, err := p.NewInput(r.Route(), az.Now(), az.Leeway())
	if err != nil {
		return
	}
	seen := map[string]bool{}
	header := false
	show := func(rule *policy.Rule, where string, prg *expr.Program, m, path string, require bool) {
		if !prg.ReadsReading() {
			m, path = in.Methods()[0], in.Path.Canonical
		}
		key := rule.Name + " " + where + " " + m + " " + path
		if seen[key] {
			return
		}
		seen[key] = true
		value := "not evaluated: no verified token"
		if !require || claims != nil {
			ok, err := prg.Eval(in.Vars(m, path, claims))
			value = fmt.Sprint(ok)
			if err != nil {
				value = "ERROR: " + err.Error() + " (refuses the request: condition_error)"
			}
		}
		if !header {
			fmt.Fprintln(out, "\nConditions:")
			header = true
		}
		fmt.Fprintf(out, "  rule %s, %s under %s %s\n    %s\n    = %s\n", rule.Name, where, m, path, prg.Source(), value)
	}
	p.EachReading(in, func(m string, rd reqpath.Reading, selected *policy.Rule, _ error) {
		for _, rule := range p.Rules {
			for i, prg := range rule.MatchCEL {
				show(rule, fmt.Sprintf("match.cel[%d]", i), prg, m, rd.Path, false)
			}
		}
		for i, prg := range selected.Conditions {
			show(selected, fmt.Sprintf("require.cel[%d]", i), prg, m, rd.Path, true)
		}
	})
}

// printDecoded shows the token's header and claims as they are, before any verification.
func printDecoded(out io.Writer, token string) {
	if token == "" {
		fmt.Fprintln(out, "Token:    none")
		return
	}
	parts := strings.Split(token, ".")
	for i, label := range []string{"Header (unverified):", "Claims (unverified):"} {
		fmt.Fprintln(out, label)
		if i >= len(parts) {
			fmt.Fprintln(out, "  (missing)")
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		var pretty bytes.Buffer
		if err == nil {
			err = json.Indent(&pretty, raw, "  ", "  ")
		}
		if err != nil {
			fmt.Fprintf(out, "  (not decodable: %v)\n", err)
			continue
		}
		fmt.Fprintf(out, "  %s\n", pretty.String())
		if i == 1 {
			printTimes(out, raw)
		}
	}
}

func printTimes(out io.Writer, raw []byte) {
	var t struct{ Exp, Iat, Nbf *float64 }
	if json.Unmarshal(raw, &t) != nil {
		return
	}
	for _, f := range []struct {
		n string
		v *float64
	}{{"iat", t.Iat}, {"nbf", t.Nbf}, {"exp", t.Exp}} {
		if f.v != nil {
			ts := time.Unix(int64(*f.v), 0).UTC()
			fmt.Fprintf(out, "  %s = %s (%s)\n", f.n, ts.Format(time.RFC3339), relative(ts))
		}
	}
}

func relative(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d < 0 {
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}
