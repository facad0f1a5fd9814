package authz

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"

	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/reqhost"
)

// Sender constraints a request proved (a bit set): the token is bound to a DPoP key whose
// proof came with the request, or to the client certificate of the request's mutual TLS.
const (
	boundDPoP uint8 = 1 << iota
	boundMTLS
)

// The reasons a sender-constrained token, or a proof, is refused.
var (
	ErrDPoPBoundAsBearer   = &Reason{"dpop_bound_token_as_bearer", "The access token is bound to a DPoP key: present it with the DPoP scheme and a proof"}
	ErrNotDPoPBound        = &Reason{"token_not_dpop_bound", "The access token is not bound to a DPoP key"}
	ErrDPoPKeyMismatch     = &Reason{"dpop_key_mismatch", "The DPoP proof's key is not the one the access token is bound to"}
	ErrCertificateBinding  = &Reason{"certificate_binding", "The access token is bound to a client certificate that this request did not present"}
	ErrUnknownConfirmation = &Reason{"unknown_cnf", "The access token's confirmation (cnf) cannot be verified"}
	ErrSenderConstrained   = &Reason{"sender_constraint_required", "This resource requires a sender-constrained access token"}
)

// ProofReasons are the reasons for the DPoP proof failures (dpop.Failures), in that order.
var ProofReasons = func() []*Reason {
	var out []*Reason
	for _, f := range dpop.Failures {
		out = append(out, &Reason{f.Code, f.Description})
	}
	return out
}()

func proofReason(f *dpop.Failure) *Reason {
	for i, g := range dpop.Failures {
		if g == f {
			return ProofReasons[i]
		}
	}
	return ErrMalformed
}

// bind checks that the request proves what the verified token is bound to, and returns the
// constraints it proved. A token bound by cnf.jkt needs the DPoP scheme and a valid proof of
// that key (RFC 9449 §7: never accepted as a bearer token); one bound by cnf.x5t#S256 needs
// the request's client certificate (RFC 8705 §3); a cnf this service cannot check fails. An
// unbound token under the DPoP scheme is the token's fault (§7.1). A proof is remembered only
// once everything else holds, so a refused one never fills the replay store.
func (a *Authorizer) bind(ctx context.Context, r *Request, host reqhost.Host, scheme, token string, c *Claims) (uint8, error) {
	cnf := c.Cnf
	if cnf != nil && cnf.Unknown {
		return 0, ErrUnknownConfirmation
	}
	var bound uint8
	var proof *dpop.Proof
	if scheme == SchemeDPoP {
		p, err := a.dpop.Verify(r.DPoP, dpop.Request{Method: r.Method, URI: a.requestURI(r, host), AccessToken: token})
		switch {
		case err != nil:
			return 0, err
		case cnf == nil || cnf.JKT == "":
			return 0, ErrNotDPoPBound
		case cnf.JKT != p.Thumbprint:
			return 0, ErrDPoPKeyMismatch
		}
		proof, bound = p, boundDPoP
	} else if cnf != nil && cnf.JKT != "" {
		return 0, ErrDPoPBoundAsBearer
	}
	if cnf != nil && cnf.X5TS256 != "" {
		if tp, ok := certThumbprint(r.ClientCert); !ok || tp != cnf.X5TS256 {
			return 0, ErrCertificateBinding
		}
		bound |= boundMTLS
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

// certThumbprint is the base64url SHA-256 of the DER client certificate a proxy passed: a
// URL-encoded PEM (Envoy's source.certificate, nginx's $ssl_client_escaped_cert), a PEM, or
// base64 DER without PEM armour (Traefik's passTLSClientCert).
func certThumbprint(passed string) (string, bool) {
	if passed == "" {
		return "", false
	}
	if strings.Contains(passed, "%") {
		// URL-encoded: Envoy (PercentEncoding::urlEncode) and nginx escape every reserved byte,
		// so a "+" left in it is base64's own.
		unescaped, err := url.PathUnescape(passed)
		if err != nil {
			return "", false
		}
		passed = unescaped
	}
	var der []byte
	if block, _ := pem.Decode([]byte(passed)); block != nil {
		if block.Type != "CERTIFICATE" {
			return "", false
		}
		der = block.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(passed), ""))
		if err != nil {
			return "", false
		}
		der = b
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return "", false
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), true
}

// proofFailure reports whether err is a DPoP proof's failure, and which.
func proofFailure(err error) (*dpop.Failure, bool) {
	var f *dpop.Failure
	if errors.As(err, &f) {
		return f, true
	}
	return nil, false
}
