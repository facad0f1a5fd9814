package authz

import (
	"context"
	"errors"
	"strings"

	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/reqhost"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// The reasons a sender-constrained token, or a proof, is refused.
var (
	ErrDPoPBoundAsBearer   = &Reason{Code: "dpop_bound_token_as_bearer", Description: "The access token is bound to a DPoP key: present it with the DPoP scheme and a proof"}
	ErrNotDPoPBound        = &Reason{Code: "token_not_dpop_bound", Description: "The access token is not bound to a DPoP key"}
	ErrDPoPKeyMismatch     = &Reason{Code: "dpop_key_mismatch", Description: "The DPoP proof's key is not the one the access token is bound to"}
	ErrCertificateBinding  = &Reason{Code: "certificate_binding", Description: "The access token is bound to a client certificate that this request did not present"}
	ErrUnknownConfirmation = &Reason{Code: "unknown_cnf", Description: "The access token's confirmation (cnf) cannot be verified"}
	ErrSenderConstrained   = &Reason{Code: "sender_constraint_required", Description: "This resource requires a sender-constrained access token"}
)

// ProofReasons are the reasons for the DPoP proof failures (dpop.Failures), in that order.
var ProofReasons = func() []*Reason {
	var out []*Reason
	for _, f := range dpop.Failures {
		out = append(out, &Reason{Code: f.Code, Description: f.Description})
	}
	return out
}()

func proofReason(f *dpop.Failure) *Reason {
	for i, g := range dpop.Failures {
		if g == f {
			return ProofReasons[i]
		}
	}
	return token.ErrMalformed
}

// bind checks that the request proves what the verified token is bound to, and returns the
// constraints it proved. A token bound by cnf.jkt needs the DPoP scheme and a valid proof of
// that key (RFC 9449 §7: never accepted as a bearer token); one bound by cnf.x5t#S256 needs
// the request's client certificate (RFC 8705 §3); a cnf this service cannot check fails. An
// unbound token under the DPoP scheme is the token's fault (§7.1). A proof is remembered only
// once everything else holds, so a refused one never fills the replay store.
func (a *Authorizer) bind(ctx context.Context, r *Request, host reqhost.Host, scheme, tok string, c *token.Claims) (policy.Bound, error) {
	cnf := c.Cnf
	if cnf != nil && cnf.Unknown {
		return 0, ErrUnknownConfirmation
	}
	var bound policy.Bound
	var proof *dpop.Proof
	if scheme == token.SchemeDPoP {
		p, err := a.dpop.Verify(r.DPoP, dpop.Request{Method: r.Method, URI: a.requestURI(r, host), AccessToken: tok})
		switch {
		case err != nil:
			return 0, err
		case cnf == nil || cnf.JKT == "":
			return 0, ErrNotDPoPBound
		case cnf.JKT != p.Thumbprint:
			return 0, ErrDPoPKeyMismatch
		}
		proof, bound = p, policy.BoundDPoP
	} else if cnf != nil && cnf.JKT != "" {
		return 0, ErrDPoPBoundAsBearer
	}
	if cnf != nil && cnf.X5TS256 != "" {
		if tp, ok := token.CertThumbprint(r.ClientCert); !ok || tp != cnf.X5TS256 {
			return 0, ErrCertificateBinding
		}
		bound |= policy.BoundMTLS
	}
	if proof != nil {
		if err := a.dpop.Remember(ctx, proof); err != nil {
			return 0, err
		}
	}
	return bound, nil
}

// requestURI is the URI a DPoP proof's htu must name: the external origin (--public-url) or
// the scheme and host the proxy reports (validated: a host that could end the authority early,
// "h?" or "h/", never reaches here), and the request path without its query.
func (a *Authorizer) requestURI(r *Request, host reqhost.Host) string {
	origin := a.publicURL
	if origin == "" {
		scheme := strings.ToLower(r.Scheme)
		if scheme != "http" && scheme != "https" {
			scheme = "https"
		}
		origin = scheme + "://" + host.Authority()
	}
	return origin + pathOnly(r.Path)
}

// proofFailure reports whether err is a DPoP proof's failure, and which.
func proofFailure(err error) (*dpop.Failure, bool) {
	var f *dpop.Failure
	if errors.As(err, &f) {
		return f, true
	}
	return nil, false
}
