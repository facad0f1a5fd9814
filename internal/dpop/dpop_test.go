package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	t0          = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ecKey       = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rsaKey      = must(rsa.GenerateKey(rand.Reader, 2048))
	rsaWeak     = must(rsa.GenerateKey(rand.Reader, 1024))
	_, edKey, _ = ed25519.GenerateKey(rand.Reader)
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

const (
	token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln" // any string: only its hash matters
	uri   = "https://api.example/api/messages"
)

func ath(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proof signs a proof with priv under alg; hdr and claims override the defaults (nil deletes).
func proof(t *testing.T, priv any, alg jwa.SignatureAlgorithm, hdr, claims map[string]any) string {
	t.Helper()
	pubJWK, err := jwk.PublicKeyOf(priv)
	require.NoError(t, err)
	h := map[string]any{"typ": "dpop+jwt", "jwk": pubJWK}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	c := map[string]any{"jti": "j-" + t.Name(), "htm": "GET", "htu": uri, "iat": t0.Unix(), "ath": ath(token)}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	headers := jws.NewHeaders()
	for k, v := range h {
		require.NoError(t, headers.Set(k, v))
	}
	payload, err := json.Marshal(c)
	require.NoError(t, err)
	out, err := jws.Sign(payload, jws.WithKey(alg, priv, jws.WithProtectedHeaders(headers)))
	require.NoError(t, err)
	return string(out)
}

// weakRSAProof carries a 1024-bit RSA key in its jwk (jwx refuses to sign with one; the
// signature does not matter, the key is refused first).
func weakRSAProof(t *testing.T) string {
	t.Helper()
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": map[string]string{"kty": "RSA",
		"n": base64.RawURLEncoding.EncodeToString(rsaWeak.N.Bytes()), "e": "AQAB"}}
	h, err := json.Marshal(hdr)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(h) + ".e30.c2ln"
}

// signRaw signs header and payload exactly as written (member order, duplicates and spelling
// kept, which a map cannot hold) with priv under alg.
func signRaw(t testing.TB, priv any, alg jwa.SignatureAlgorithm, header, payload string) string {
	t.Helper()
	signer, err := jws.SignerFor(alg)
	require.NoError(t, err)
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := signer.Sign(priv, []byte(input))
	require.NoError(t, err)
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// publicJWK is the JSON of priv's public key, with extra members (raw JSON text) appended.
func publicJWK(t testing.TB, priv any, extra string) string {
	t.Helper()
	pub, err := jwk.PublicKeyOf(priv)
	require.NoError(t, err)
	b, err := json.Marshal(pub)
	require.NoError(t, err)
	return strings.TrimSuffix(string(b), "}") + extra + "}"
}

func newVerifier(t *testing.T) *Verifier {
	t.Helper()
	v, err := New(Options{Leeway: 30 * time.Second, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	return v
}

func TestVerify(t *testing.T) {
	v := newVerifier(t)
	req := Request{Method: "GET", URI: uri, AccessToken: token}
	privateJWK := must(jwk.Import(ecKey)) // a private key in the jwk header
	hmac := func() string {
		hdr := jws.NewHeaders()
		require.NoError(t, hdr.Set("typ", "dpop+jwt"))
		out, err := jws.Sign([]byte(`{"jti":"x","htm":"GET","htu":"`+uri+`","iat":1}`), jws.WithKey(jwa.HS256(), []byte("secret"), jws.WithProtectedHeaders(hdr)))
		require.NoError(t, err)
		return string(out)
	}()
	good := proof(t, ecKey, jwa.ES256(), nil, nil)
	parts := strings.Split(good, ".")

	tests := []struct {
		name   string
		values []string
		req    *Request
		want   *Failure // nil: valid
	}{
		{"valid ES256", []string{good}, nil, nil},
		{"valid RS256", []string{proof(t, rsaKey, jwa.RS256(), nil, nil)}, nil, nil},
		{"valid PS256", []string{proof(t, rsaKey, jwa.PS256(), nil, nil)}, nil, nil},
		{"valid EdDSA", []string{proof(t, edKey, jwa.EdDSA(), nil, nil)}, nil, nil},
		{"valid Ed25519 (RFC 9864)", []string{proof(t, edKey, jwa.EdDSAEd25519(), nil, nil)}, nil, nil},
		{"Ed25519 with an EC key", []string{signRaw(t, ecKey, jwa.ES256(), `{"typ":"dpop+jwt","alg":"Ed25519","jwk":`+publicJWK(t, ecKey, "")+`}`, `{}`)}, nil, ErrKey},
		{"Ed448 is not supported", []string{signRaw(t, edKey, jwa.EdDSA(), `{"typ":"dpop+jwt","alg":"Ed448","jwk":`+publicJWK(t, edKey, "")+`}`, `{}`)}, nil, ErrAlg},
		{"htu differs only in case and default port", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "HTTPS://API.example:443/api/messages"})}, nil, nil},
		{"htu with a query and fragment", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": uri + "?x=1#f"})}, nil, nil},
		{"htu with an encoded letter", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "https://api.example/api/%6Dessages"})}, nil, nil},
		{"iat within the leeway in the future", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"iat": t0.Add(20 * time.Second).Unix()})}, nil, nil},

		{"no proof", nil, nil, ErrMissing},
		{"two proofs", []string{good, good}, nil, ErrMultiple},
		{"two proofs joined by Envoy", []string{good + "," + good}, nil, ErrMultiple},
		{"not a JWS", []string{"abc"}, nil, ErrMalformed},
		{"JSON serialization", []string{`{"payload":"e30"}`}, nil, ErrMalformed},
		{"too large", []string{strings.Repeat("a", MaxProofBytes+1)}, nil, ErrMalformed},
		{"typ missing", []string{proof(t, ecKey, jwa.ES256(), map[string]any{"typ": nil}, nil)}, nil, ErrType},
		{"typ JWT", []string{proof(t, ecKey, jwa.ES256(), map[string]any{"typ": "JWT"}, nil)}, nil, ErrType},
		{"alg HS256", []string{hmac}, nil, ErrAlg},
		{"alg not in the list", []string{proof(t, ecKey, jwa.ES384(), nil, nil)}, nil, ErrAlg},
		{"jwk missing", []string{proof(t, ecKey, jwa.ES256(), map[string]any{"jwk": nil}, nil)}, nil, ErrKey},
		{"jwk holds a private key", []string{proof(t, ecKey, jwa.ES256(), map[string]any{"jwk": privateJWK}, nil)}, nil, ErrPrivateKey},
		{"RSA key too short", []string{weakRSAProof(t)}, nil, ErrKey},
		{"jwk of another key", []string{proof(t, ecKey, jwa.ES256(), map[string]any{"jwk": must(jwk.PublicKeyOf(&must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)).PublicKey))}, nil)}, nil, ErrSignature},
		{"alg does not fit the key", []string{proof(t, rsaKey, jwa.RS256(), map[string]any{"jwk": must(jwk.PublicKeyOf(&ecKey.PublicKey))}, nil)}, nil, ErrKey},
		{"tampered payload", []string{parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"x","htm":"POST"}`)) + "." + parts[2]}, nil, ErrSignature},
		{"crit", []string{proof(t, ecKey, jwa.ES256(), map[string]any{"crit": []string{"exp"}}, nil)}, nil, ErrMalformed},
		{"jti missing", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"jti": nil})}, nil, ErrJTI},
		{"jti too long", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"jti": strings.Repeat("j", 257)})}, nil, ErrJTI},
		{"htm differs", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htm": "POST"})}, nil, ErrMethod},
		{"htm lower-case", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htm": "get"})}, nil, ErrMethod},
		{"htu another path", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "https://api.example/secure"})}, nil, ErrURI},
		{"htu another host", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "https://evil.example/api/messages"})}, nil, ErrURI},
		{"htu another scheme", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "http://api.example/api/messages"})}, nil, ErrURI},
		{"htu another port", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "https://api.example:8443/api/messages"})}, nil, ErrURI},
		{"htu relative", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"htu": "/api/messages"})}, nil, ErrURI},
		{"iat missing", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"iat": nil})}, nil, ErrMalformed},
		{"iat a string", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"iat": "now"})}, nil, ErrMalformed},
		{"iat too old", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"iat": t0.Add(-DefaultMaxAge - time.Minute).Unix()})}, nil, ErrTooOld},
		{"iat in the future", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"iat": t0.Add(time.Minute).Unix()})}, nil, ErrFuture},
		{"ath missing", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"ath": nil})}, nil, ErrATH},
		{"ath of another token", []string{proof(t, ecKey, jwa.ES256(), nil, map[string]any{"ath": ath("other")})}, nil, ErrATH},
		{"ath without a token", []string{good}, &Request{Method: "GET", URI: uri}, ErrATH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req
			if tt.req != nil {
				r = *tt.req
			}
			p, err := v.Verify(tt.values, r)
			if tt.want == nil {
				require.NoError(t, err)
				assert.NotEmpty(t, p.Thumbprint)
				return
			}
			assert.Equal(t, tt.want, err, "got %v", err)
			assert.Nil(t, p)
		})
	}
}

func TestThumbprintIsRFC7638(t *testing.T) {
	// RFC 7638 §3.1's example key and thumbprint.
	const key = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	v := newVerifier(t)
	k, err := v.parseKey(json.RawMessage(key))
	require.NoError(t, err)
	assert.Equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", k.thumbprint)
}

func TestRememberAcceptsAProofOnce(t *testing.T) {
	v := newVerifier(t)
	req := Request{Method: "GET", URI: uri, AccessToken: token}
	p1 := proof(t, ecKey, jwa.ES256(), nil, map[string]any{"jti": "once"})
	first, err := v.Verify([]string{p1}, req)
	require.NoError(t, err)
	require.NoError(t, v.Remember(context.Background(), first))
	_, err = v.Verify([]string{p1}, req)
	assert.Equal(t, ErrReplay, err, "the very same bytes: refused before the signature is checked")
	// Another verifier on the same store (another replica, or after the recent-proof cache
	// forgot it) finds the replay in the store.
	other, err := New(Options{Leeway: 30 * time.Second, Now: func() time.Time { return t0 }, Replay: v.opts.Replay})
	require.NoError(t, err)
	again, err := other.Verify([]string{p1}, req)
	require.NoError(t, err, "the proof itself is valid")
	assert.Equal(t, ErrReplay, other.Remember(context.Background(), again))

	// The same jti from another key is another proof.
	p2 := proof(t, rsaKey, jwa.RS256(), nil, map[string]any{"jti": "once"})
	otherKey, err := v.Verify([]string{p2}, req)
	require.NoError(t, err)
	assert.NoError(t, v.Remember(context.Background(), otherKey))
}

func TestNewRefusesUnsafeAlgorithms(t *testing.T) {
	for _, alg := range []string{"none", "HS256", "XX"} {
		_, err := New(Options{Algs: []string{alg}})
		assert.Error(t, err, alg)
	}
}

// FuzzVerify: any header value is refused with a Failure or verified, never a panic; nothing
// but a proof signed by the key it carries verifies.
func FuzzVerify(f *testing.F) {
	tt := &testing.T{}
	good := proof(tt, ecKey, jwa.ES256(), nil, nil)
	for _, s := range []string{good, good[:len(good)-4], "a.b.c", "..", "e30.e30.e30", good + "," + good} {
		f.Add(s)
	}
	v, err := New(Options{Now: func() time.Time { return t0 }})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := v.Verify([]string{s}, Request{Method: "GET", URI: uri, AccessToken: token})
		if err != nil {
			if _, ok := err.(*Failure); !ok {
				t.Fatalf("Verify(%q): %v is not a Failure", s, err)
			}
			return
		}
		if s != good && p.Thumbprint == "" {
			t.Fatalf("Verify(%q) passed without a key", s)
		}
	})
}

// TestMemberNamesAreExact: the header's and the claims' members are read by their exact names.
// A member named twice, or a case variant of a name the verifier reads, is refused as
// malformed — encoding/json would have read the variant (case-insensitively, the last one
// winning), another library the first; a case variant of a name it does not read passes.
func TestMemberNamesAreExact(t *testing.T) {
	v := newVerifier(t)
	jwkEC := publicJWK(t, ecKey, "")
	hdr := func(extra string) string { return `{"typ":"dpop+jwt","alg":"ES256","jwk":` + jwkEC + extra + `}` }
	claims := func(extra string) string {
		return fmt.Sprintf(`{"jti":"j-%d","htm":"GET","htu":%q,"iat":%d,"ath":%q%s}`, len(extra), uri, t0.Unix(), ath(token), extra)
	}
	post := Request{Method: "POST", URI: uri, AccessToken: token}
	tests := []struct {
		name            string
		header, payload string
		req             *Request
		want            *Failure
	}{
		{"plain", hdr(""), claims(""), nil, nil},
		{"a case variant of an unread claim", hdr(""), claims(`,"nonce":"a","Nonce":"b","Custom":1,"custom":2`), nil, nil},
		{"a case variant of an unread header", hdr(`,"kid":"a","KID":"b"`), claims(""), nil, nil},
		{"member names are unescaped", hdr(""), `{"j\u0074i":"x","htm":"GET","htu":"` + uri + `","iat":` + fmt.Sprint(t0.Unix()) + `,"ath":"` + ath(token) + `"}`, nil, nil},

		// encoding/json would read the last htm: POST.
		{"htm twice", hdr(""), claims(`,"htm":"POST"`), &post, ErrMalformed},
		{"HTM after htm", hdr(""), claims(`,"HTM":"POST"`), &post, ErrMalformed},
		{"Htm alone", hdr(""), strings.Replace(claims(""), `"htm"`, `"Htm"`, 1), nil, ErrMalformed},
		{"htm twice, once escaped", hdr(""), claims(`,"h\u0074m":"POST"`), &post, ErrMalformed},
		{"Htu", hdr(""), claims(`,"Htu":"https://api.example/other"`), nil, ErrMalformed},
		{"JTI", hdr(""), claims(`,"JTI":"other"`), nil, ErrMalformed},
		{"iat twice", hdr(""), claims(fmt.Sprintf(`,"iat":%d`, t0.Unix())), nil, ErrMalformed},
		{"Ath", hdr(""), claims(`,"Ath":"x"`), nil, ErrMalformed},
		{"an unread claim twice", hdr(""), claims(`,"nonce":"a","nonce":"b"`), nil, ErrMalformed},
		{"Alg", hdr(`,"Alg":"RS256"`), claims(""), nil, ErrMalformed},
		{"typ twice", hdr(`,"typ":"dpop+jwt"`), claims(""), nil, ErrMalformed},
		{"TYP", hdr(`,"TYP":"JWT"`), claims(""), nil, ErrMalformed},
		{"Crit", hdr(`,"Crit":["exp"]`), claims(""), nil, ErrMalformed},
		{"jwk with the Kelvin sign", hdr(`,"jw\u212a":{}`), claims(""), nil, ErrMalformed},
		{"jwk twice", hdr(`,"jwk":` + publicJWK(t, rsaKey, "")), claims(""), nil, ErrMalformed},
		{"an object after the claims", hdr(""), claims("") + `{}`, nil, ErrMalformed},
		{"text after the header", hdr("") + ` x`, claims(""), nil, ErrMalformed},
		{"claims an array", hdr(""), `[` + claims("") + `]`, nil, ErrMalformed},
		{"jti a number", hdr(""), strings.Replace(claims(""), `"jti":"j-0"`, `"jti":1`, 1), nil, ErrMalformed},

		{"jwk member twice", `{"typ":"dpop+jwt","alg":"ES256","jwk":` + publicJWK(t, ecKey, `,"x":"AAAA"`) + `}`, claims(""), nil, ErrKey},
		{"jwk member case variant", `{"typ":"dpop+jwt","alg":"ES256","jwk":` + publicJWK(t, ecKey, `,"X":"AAAA"`) + `}`, claims(""), nil, ErrKey},
		{"jwk private member case variant", `{"typ":"dpop+jwt","alg":"ES256","jwk":` + publicJWK(t, ecKey, `,"D":"AAAA"`) + `}`, claims(""), nil, ErrKey},
		{"jwk unread member case variant", `{"typ":"dpop+jwt","alg":"ES256","jwk":` + publicJWK(t, ecKey, `,"use":"sig","USE":"enc"`) + `}`, claims(""), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := Request{Method: "GET", URI: uri, AccessToken: token}
			if tt.req != nil {
				req = *tt.req
			}
			p, err := v.Verify([]string{signRaw(t, ecKey, jwa.ES256(), tt.header, tt.payload)}, req)
			if tt.want == nil {
				require.NoError(t, err)
				assert.NotNil(t, p)
				return
			}
			assert.Equal(t, tt.want, err, "got %v", err)
		})
	}
}
