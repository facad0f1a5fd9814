package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

const dpopURI = "https://api.example/api/messages"

// dpopEnv is env with the DPoP scheme on and a client key whose thumbprint binds tokens.
type dpopEnv struct {
	*env
	key, otherKey jwk.Key
	jkt           string
}

func newDPoPEnv(t *testing.T, store dpop.ReplayStore) *dpopEnv {
	t.Helper()
	e := newEnv(t, nil)
	v, err := dpop.New(dpop.Options{Leeway: time.Minute, Now: func() time.Time { return e.now }, Replay: store})
	require.NoError(t, err)
	e.az = NewAuthorizer(e.v, Options{Realm: "api", DPoP: v})
	d := &dpopEnv{env: e, key: must(devidp.NewProofKey()), otherKey: must(devidp.NewProofKey())}
	d.jkt = must(devidp.Thumbprint(d.key))
	return d
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// proof signs a proof with key for GET dpopURI and token.
func (d *dpopEnv) proof(t *testing.T, key jwk.Key, method, uri, token string) string {
	t.Helper()
	p, err := devidp.Proof(key, method, uri, token, d.now)
	require.NoError(t, err)
	return p
}

func (d *dpopEnv) request(scheme, token string, proofs ...string) *Request {
	r := &Request{Method: "GET", Host: "api.example", Scheme: "https", Path: "/api/messages?page=2", DPoP: proofs}
	if token != "" {
		r.Authorization = []string{scheme + " " + token}
	}
	return r
}

func TestSenderConstrainedTokens(t *testing.T) {
	d := newDPoPEnv(t, nil)
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	unbound := d.mint(t, nil)
	cert, x5t := tokentest.ClientCert(t)
	otherCert, _ := tokentest.ClientCert(t)
	certBound := d.mint(t, map[string]any{"cnf": map[string]string{"x5t#S256": x5t}})
	unknownCnf := d.mint(t, map[string]any{"cnf": map[string]string{"kid": "k1"}})
	emptyCnf := d.mint(t, map[string]any{"cnf": map[string]string{}})
	writer := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}, "scp": []string{"messages:write"}})
	d.az.SetPolicy(must(policy.Load([]byte(`
rules:
  - name: dpop-only
    match: { path: /dpop-only }
    require: { sender_constrained: dpop }
  - name: mtls-only
    match: { path: /mtls-only }
    require: { sender_constrained: mtls }
  - name: any-bound
    match: { path: /any-bound }
    require: { sender_constrained: any }
  - name: messages
    match: { path: /api/messages }
    require: { scopes: [messages:read] }
`), []string{"default"})))

	tests := []struct {
		name      string
		r         func() *Request
		want      Outcome
		reason    *Reason
		challenge string // the WWW-Authenticate value, or a prefix of it
	}{
		{"bound token with a valid proof", func() *Request {
			return d.request("DPoP", bound, d.proof(t, d.key, "GET", dpopURI, bound))
		}, Allow, nil, ""},
		{"proof's htu with the default port and another case", func() *Request {
			return d.request("DPoP", bound, d.proof(t, d.key, "GET", "HTTPS://API.EXAMPLE:443/api/messages", bound))
		}, Allow, nil, ""},
		{"bound token as a bearer token", func() *Request { return d.request("Bearer", bound) },
			InvalidToken, ErrDPoPBoundAsBearer, `DPoP algs="ES256 RS256 PS256 EdDSA Ed25519", error="invalid_token"`},
		{"bound token as a bearer token, with a proof", func() *Request {
			return d.request("Bearer", bound, d.proof(t, d.key, "GET", dpopURI, bound))
		}, InvalidToken, ErrDPoPBoundAsBearer, `DPoP algs=`},
		{"unbound token with the DPoP scheme", func() *Request {
			return d.request("DPoP", unbound, d.proof(t, d.key, "GET", dpopURI, unbound))
		}, InvalidToken, ErrNotDPoPBound, `DPoP algs="ES256 RS256 PS256 EdDSA Ed25519", error="invalid_token"`},
		{"proof by another key", func() *Request {
			return d.request("DPoP", bound, d.proof(t, d.otherKey, "GET", dpopURI, bound))
		}, InvalidToken, ErrDPoPKeyMismatch, `DPoP algs=`},
		{"no proof", func() *Request { return d.request("DPoP", bound) },
			InvalidProof, ProofReasons[0], `DPoP algs="ES256 RS256 PS256 EdDSA Ed25519", error="invalid_dpop_proof", error_description="A DPoP proof is required"`},
		{"proof for another method", func() *Request {
			return d.request("DPoP", bound, d.proof(t, d.key, "POST", dpopURI, bound))
		}, InvalidProof, proofReason(dpop.ErrMethod), `DPoP algs=`},
		{"proof for another URI", func() *Request {
			return d.request("DPoP", bound, d.proof(t, d.key, "GET", "https://api.example/secure", bound))
		}, InvalidProof, proofReason(dpop.ErrURI), `DPoP algs=`},
		{"proof for another token", func() *Request {
			return d.request("DPoP", bound, d.proof(t, d.key, "GET", dpopURI, unbound))
		}, InvalidProof, proofReason(dpop.ErrATH), `DPoP algs=`},
		{"a cnf it cannot check", func() *Request { return d.request("Bearer", unknownCnf) },
			InvalidToken, ErrUnknownConfirmation, `Bearer realm="api", error="invalid_token"`},
		{"an empty cnf", func() *Request { return d.request("Bearer", emptyCnf) },
			InvalidToken, ErrUnknownConfirmation, `Bearer realm="api", error="invalid_token"`},
		{"certificate-bound token without a certificate", func() *Request { return d.request("Bearer", certBound) },
			InvalidToken, ErrCertificateBinding, `Bearer realm="api", error="invalid_token"`},
		{"certificate-bound token with another certificate", func() *Request {
			r := d.request("Bearer", certBound)
			r.ClientCert = otherCert
			return r
		}, InvalidToken, ErrCertificateBinding, `Bearer realm=`},
		{"certificate-bound token with its certificate", func() *Request {
			r := d.request("Bearer", certBound)
			r.ClientCert = cert
			return r
		}, Allow, nil, ""},
		{"no credentials: both challenges in one value", func() *Request { return d.request("", "") },
			NoCredentials, token.ErrNoCredentials, `Bearer realm="api", DPoP algs="ES256 RS256 PS256 EdDSA Ed25519"`},
		{"a Bearer and a DPoP Authorization", func() *Request {
			r := d.request("DPoP", bound, d.proof(t, d.key, "GET", dpopURI, bound))
			r.Authorization = append(r.Authorization, "Bearer "+unbound)
			return r
		}, InvalidRequest, token.ErrMultipleCredentials, `Bearer realm="api", error="invalid_request"`},
		{"missing scope under DPoP", func() *Request {
			return d.request("DPoP", writer, d.proof(t, d.key, "GET", dpopURI, writer))
		}, InsufficientScope, policy.ErrInsufficientScope, `DPoP algs="ES256 RS256 PS256 EdDSA Ed25519", error="insufficient_scope"`},
		{"rule needs DPoP, bearer token", func() *Request {
			r := d.request("Bearer", unbound)
			r.Path = "/dpop-only"
			return r
		}, InvalidToken, ErrSenderConstrained, `DPoP algs=`},
		{"rule needs DPoP, DPoP-bound token", func() *Request {
			r := d.request("DPoP", bound, d.proof(t, d.key, "GET", "https://api.example/dpop-only", bound))
			r.Path = "/dpop-only"
			return r
		}, Allow, nil, ""},
		{"rule needs mTLS, DPoP-bound token", func() *Request {
			r := d.request("DPoP", bound, d.proof(t, d.key, "GET", "https://api.example/mtls-only", bound))
			r.Path = "/mtls-only"
			return r
		}, InvalidToken, ErrSenderConstrained, `Bearer realm=`},
		{"rule needs any binding, certificate-bound token", func() *Request {
			r := d.request("Bearer", certBound)
			r.Path, r.ClientCert = "/any-bound", cert
			return r
		}, Allow, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := d.az.Decide(context.Background(), tt.r())
			assert.Equal(t, tt.want.String(), dec.Outcome.String(), "reason %v, detail %s", dec.Reason, dec.Detail)
			assert.Equal(t, tt.reason, dec.Reason, "detail %s", dec.Detail)
			if tt.challenge != "" {
				assert.Contains(t, headerOf(dec.ClientHeaders(d.az.Challenges()), "www-authenticate"), tt.challenge)
			}
		})
	}
}

func TestDPoPProofIsAcceptedOnce(t *testing.T) {
	d := newDPoPEnv(t, nil)
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	proof := d.proof(t, d.key, "GET", dpopURI, bound)
	first := d.az.Decide(context.Background(), d.request("DPoP", bound, proof))
	require.Equal(t, Allow, first.Outcome, "%v", first.Reason)
	assert.Equal(t, token.SchemeDPoP, first.Scheme)
	again := d.az.Decide(context.Background(), d.request("DPoP", bound, proof))
	assert.Equal(t, InvalidProof, again.Outcome)
	assert.Equal(t, proofReason(dpop.ErrReplay), again.Reason)
	// The token stays cached as verified; a fresh proof is accepted.
	fresh := d.az.Decide(context.Background(), d.request("DPoP", bound, d.proof(t, d.key, "GET", dpopURI, bound)))
	assert.Equal(t, Allow, fresh.Outcome)
}

// A refused proof is never remembered: it cannot block the client's real proof.
func TestRefusedProofIsNotRemembered(t *testing.T) {
	d := newDPoPEnv(t, nil)
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	unbound := d.mint(t, nil)
	proof := d.proof(t, d.key, "GET", dpopURI, bound)
	r := d.request("DPoP", unbound, proof)
	r.Authorization = []string{"DPoP " + bound} // the right token now, but …
	r.Method = "POST"                           // … another method: the proof fails
	assert.Equal(t, InvalidProof, d.az.Decide(context.Background(), r).Outcome)
	assert.Equal(t, Allow, d.az.Decide(context.Background(), d.request("DPoP", bound, proof)).Outcome)
}

type failingStore struct{}

func (failingStore) FirstUse(context.Context, dpop.Use) (bool, error) {
	return false, errors.New("connection refused")
}

func TestReplayStoreOutageIsUnavailable(t *testing.T) {
	d := newDPoPEnv(t, failingStore{})
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	dec := d.az.Decide(context.Background(), d.request("DPoP", bound, d.proof(t, d.key, "GET", dpopURI, bound)))
	assert.Equal(t, Unavailable, dec.Outcome, "never an allow of a proof that could not be checked")
	assert.Equal(t, 503, dec.HTTPStatus())
}

func TestDPoPSchemeOff(t *testing.T) {
	e := newEnv(t, nil)
	key := must(devidp.NewProofKey())
	bound := e.mint(t, map[string]any{"cnf": map[string]string{"jkt": must(devidp.Thumbprint(key))}})
	proof, err := devidp.Proof(key, "GET", dpopURI, bound, t0)
	require.NoError(t, err)
	dec := e.az.Decide(context.Background(), &Request{Method: "GET", Host: "api.example", Scheme: "https",
		Path: "/api/messages", Authorization: []string{"DPoP " + bound}, DPoP: []string{proof}})
	assert.Equal(t, NoCredentials, dec.Outcome, "DPoP off: not credentials this service takes")
	assert.Equal(t, `Bearer realm="api"`, headerOf(dec.ClientHeaders(e.az.Challenges()), "www-authenticate"))
	dec = e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/api/messages", Authorization: []string{"Bearer " + bound}})
	assert.Equal(t, ErrDPoPBoundAsBearer, dec.Reason, "a bound token is still refused as a bearer token")
}

func TestPublicURLNamesTheExternalOrigin(t *testing.T) {
	d := newDPoPEnv(t, nil)
	v, err := dpop.New(dpop.Options{Now: func() time.Time { return d.now }})
	require.NoError(t, err)
	d.az = NewAuthorizer(d.v, Options{DPoP: v, PublicURL: "https://api.example.com/"})
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	r := d.request("DPoP", bound, d.proof(t, d.key, "GET", "https://api.example.com/api/messages", bound))
	r.Scheme, r.Host = "http", "internal:8080" // as the proxy behind the TLS terminator sees it
	assert.Equal(t, Allow, d.az.Decide(context.Background(), r).Outcome)
}

// TestDPoPNeverLogged: the decision log of DPoP requests, accepted and refused, holds neither
// the token, nor the proof, nor the proof's key.
func TestDPoPNeverLogged(t *testing.T) {
	d := newDPoPEnv(t, nil)
	var buf bytes.Buffer
	v, err := dpop.New(dpop.Options{Leeway: time.Minute, Now: func() time.Time { return d.now }})
	require.NoError(t, err)
	d.az = NewAuthorizer(d.v, Options{DPoP: v, DecisionLog: DecisionLogAll, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	bound := d.mint(t, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	proof := d.proof(t, d.key, "GET", dpopURI, bound)
	for range 2 { // accepted, then replayed
		d.az.Decide(context.Background(), d.request("DPoP", bound, proof))
	}
	d.az.Decide(context.Background(), d.request("Bearer", bound))
	d.az.Decide(context.Background(), d.request("DPoP", bound, proof[:len(proof)-5]+"AAAAA"))
	out := buf.String()
	require.Contains(t, out, `"reason":"dpop_replay"`)
	pubJSON := string(must(json.Marshal(must(d.key.PublicKey()))))
	x := pubJSON[strings.Index(pubJSON, `"x":"`)+5:][:20] // a piece of the key's x coordinate
	for _, secret := range []string{bound[:40], proof[:40], strings.Split(proof, ".")[2], x} {
		assert.NotContains(t, out, secret)
	}
}
