package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The introspection scenarios send opaque tokens, which the service can only judge by asking the
// issuer's introspection endpoint (RFC 7662). The endpoint is a stand-in in this process that
// answers as an Okta authorization server's /v1/introspect does, after a fixed latency: the
// service's cost is what is measured, and a real Okta would add its network and its rate limits.

// introspectionLatency is how long the stand-in takes to answer: a nearby Okta region.
const introspectionLatency = 5 * time.Millisecond

// introspectionCacheTTL is the service's --introspection-cache-ttl in the hit scenarios: long
// enough that an answer cached before the rounds is still cached in the last one (a full run
// takes minutes), so that the figure is the cost of a cached answer, not of the TTL's expiry.
const introspectionCacheTTL = time.Hour

// opaqueTokens mints the bench's opaque tokens and recognises them again, as an authorization
// server knows its own: token i is a prefix, i, and a MAC of i. The stand-in needs no table of
// issued tokens, so the miss scenario can send a new token every call, without end.
type opaqueTokens struct{ key []byte }

// opaquePrefix marks the bench's opaque tokens (Hydra's start ory_at_).
const opaquePrefix = "bench_at_"

func newOpaqueTokens() *opaqueTokens {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &opaqueTokens{key: key}
}

// token returns token i: the prefix and base64url of 8 bytes of i and 16 of its MAC — one
// length for every i (the driver splices tokens into a pre-encoded request).
func (o *opaqueTokens) token(i uint64) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], i)
	copy(b[8:], o.mac(b[:8]))
	return opaquePrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// opaqueTokenLen is the length of every token.
var opaqueTokenLen = len(opaquePrefix) + base64.RawURLEncoding.EncodedLen(24)

// index returns the i of a token this scheme minted.
func (o *opaqueTokens) index(tok string) (uint64, bool) {
	rest, ok := strings.CutPrefix(tok, opaquePrefix)
	if !ok || len(tok) != opaqueTokenLen {
		return 0, false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != 24 || !hmac.Equal(b[8:], o.mac(b[:8])) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[:8]), true
}

func (o *opaqueTokens) mac(b []byte) []byte {
	m := hmac.New(sha256.New, o.key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// tokens returns tokens from..from+n-1.
func (o *opaqueTokens) tokens(from uint64, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = o.token(from + uint64(i))
	}
	return out
}

// introspectionEndpoint is the stand-in: POST form token=… with client_secret_basic, answered
// after introspectionLatency with the members Okta's introspection returns for an access token
// of a custom authorization server, or {"active":false} for a token it did not mint.
type introspectionEndpoint struct {
	url              string
	issuer, audience string
	clientID, secret string
	tokens           *opaqueTokens
	issued, expires  time.Time
	// calls counts answered introspection requests, conns the TCP connections the service
	// opened: a client that keeps its connections opens a few, one that does not opens one
	// per call.
	calls, conns atomic.Int64
	srv          *http.Server
}

// bench's client at the stand-in: the service authenticates as it would at Okta.
const introspectionClientID = "bench-authz"

func startIntrospectionEndpoint(issuer, audience string, tokens *opaqueTokens) (*introspectionEndpoint, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 18)
	_, _ = rand.Read(secret)
	now := time.Now().Truncate(time.Second)
	ep := &introspectionEndpoint{
		url:    "http://" + l.Addr().String() + "/oauth2/default/v1/introspect",
		issuer: issuer, audience: audience, clientID: introspectionClientID,
		secret: base64.RawURLEncoding.EncodeToString(secret), tokens: tokens,
		// Longer than any run, shorter than Okta's 24 h maximum.
		issued: now, expires: now.Add(2 * time.Hour),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/default/v1/introspect", ep.introspect)
	ep.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				ep.conns.Add(1)
			}
		}}
	go func() { _ = ep.srv.Serve(l) }()
	return ep, nil
}

func (ep *introspectionEndpoint) stop() { _ = ep.srv.Close() }

// oktaIntrospection is an active answer, with the members (and their order) of Okta's.
type oktaIntrospection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
	Username  string `json:"username"`
	Exp       int64  `json:"exp"`
	Iat       int64  `json:"iat"`
	Sub       string `json:"sub"`
	Aud       string `json:"aud"`
	Iss       string `json:"iss"`
	Jti       string `json:"jti"`
	TokenType string `json:"token_type"`
	ClientID  string `json:"client_id"`
	UID       string `json:"uid"`
}

func (ep *introspectionEndpoint) introspect(w http.ResponseWriter, r *http.Request) {
	timer := time.NewTimer(introspectionLatency) // started first: the latency includes the work below
	defer timer.Stop()
	id, secret, ok := r.BasicAuth()
	if !ok || id != ep.clientID || !hmac.Equal([]byte(secret), []byte(ep.secret)) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errorCode":"invalid_client","errorSummary":"Invalid value for 'client_id' parameter."}`))
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	body := []byte(`{"active":false}`)
	if i, ok := ep.tokens.index(r.PostForm.Get("token")); ok {
		sub := fmt.Sprintf("user-%d@example.com", i)
		body, _ = json.Marshal(oktaIntrospection{Active: true, Scope: "messages:read", Username: sub,
			Exp: ep.expires.Unix(), Iat: ep.issued.Unix(), Sub: sub, Aud: ep.audience, Iss: ep.issuer,
			Jti: fmt.Sprintf("AT.bench-%d", i), TokenType: "Bearer", ClientID: "bench", UID: fmt.Sprintf("00ubench%d", i)})
	}
	<-timer.C
	ep.calls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, no-store")
	_, _ = w.Write(body)
}

// introspectionArgs are the service's flags for opaque tokens introspected at ep, with the
// client secret in a file, as an operator would mount it.
func (e *env) introspectionArgs(ep *introspectionEndpoint, cacheTTL time.Duration) ([]string, error) {
	secretFile := filepath.Join(e.dir, "introspection-secret")
	if err := os.WriteFile(secretFile, []byte(ep.secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []string{"--introspection", "opaque", "--introspection-url", ep.url,
		"--introspection-client-id", ep.clientID, "--introspection-client-secret-file", secretFile,
		"--introspection-cache-ttl", cacheTTL.String()}, nil
}

// tokenStream gives every call a token never sent before: token next, next+1, …
type tokenStream struct {
	tokens *opaqueTokens
	next   atomic.Uint64
}

// prefillOpaque sends every token once with many calls in flight (each is a call to the
// endpoint, 5 ms), so that the rounds start with the answers cached. The least popular go
// first: when the set is larger than the service's introspection cache, the cache is left
// holding the most popular, as the rounds' steady state would.
func prefillOpaque(ctx context.Context, srv *server, toks []string) error {
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	var next atomic.Int64
	next.Store(int64(len(toks)))
	var wg sync.WaitGroup
	errs := make([]error, 32) // under the service's 64 calls in flight
	for w := range errs {
		wg.Go(func() {
			for {
				i := int(next.Add(-1))
				if i < 0 {
					return
				}
				resp, err := client.Check(ctx, checkRequest("Bearer "+toks[i]))
				if err != nil {
					errs[w] = err
					return
				}
				if resp.GetStatus().GetCode() != 0 {
					errs[w] = fmt.Errorf("opaque token %d refused: %v", i, resp.GetStatus())
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
