package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
)

// pathsPolicy has a public prefix next to protected paths, the shape path confusion attacks.
const pathsPolicy = `
rules:
  - name: public
    match: { path_prefix: /public }
    public: true
  - name: messages
    match: { path: /api/messages }
    require: { scopes: [messages:read] }
  - name: admin
    match: { path_prefix: /admin/ }
    require: { scopes: [admin] }
  - name: reports-get
    match: { path: /reports, methods: [GET] }
    require: { scopes: [reports:read] }
default:
  require: {}
`

func TestPathSpellingsAreJudgedAsTheUpstreamReadsThem(t *testing.T) {
	e := newEnv(t, nil)
	p, err := LoadPolicy([]byte(pathsPolicy), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	writer := e.mint(t, map[string]any{"scp": []string{"messages:write"}})
	reader := e.mint(t, nil) // messages:read

	tests := []struct {
		method, path string
		token        string
		want         Outcome
	}{
		{"GET", "/public/x", "", Allow},
		{"GET", "/api/messages", writer, InsufficientScope},
		{"GET", "/api/messages", reader, Allow},
		// decoded, dot segments, merged slashes: the canonical path is /api/messages
		{"GET", "/api/%6Dessages", writer, InsufficientScope},
		{"GET", "/api/%6dessages", writer, InsufficientScope},
		{"GET", "/%61pi/messages", writer, InsufficientScope},
		{"GET", "//api//messages", writer, InsufficientScope},
		{"GET", "/api/./messages", writer, InsufficientScope},
		{"GET", "/x/../api/messages", writer, InsufficientScope},
		{"GET", "/public/../api/messages", "", NoCredentials},
		{"GET", "/public/%2e%2e/api/messages", "", NoCredentials},
		{"GET", "/public/.%2E/admin/x", writer, InsufficientScope},
		// readings: case, trailing slash, ;parameters — every rule that could serve it must allow
		{"GET", "/API/Messages", writer, InsufficientScope},
		{"GET", "/api/messages/", writer, InsufficientScope},
		{"GET", "/API/MESSAGES/", writer, InsufficientScope},
		{"GET", "/api/messages;x=1", writer, InsufficientScope},
		{"GET", "/public/..;/api/messages", "", NoCredentials},
		{"GET", "/PUBLIC/x", "", NoCredentials}, // the canonical reading is the default rule
		{"GET", "/admin", writer, InsufficientScope},
		{"GET", "/Admin/x", writer, InsufficientScope},
		// HEAD runs the GET handler upstream
		{"HEAD", "/reports", reader, InsufficientScope},
		{"get", "/reports", reader, InsufficientScope},
		// refused: ambiguous between upstreams
		{"GET", "/public/..%2Fapi/messages", "", InvalidRequest},
		{"GET", "/public%2F..%2Fapi%2Fmessages", "", InvalidRequest},
		{"GET", "/public/..%5Capi/messages", "", InvalidRequest},
		{"GET", "/public\\..\\api\\messages", "", InvalidRequest},
		{"GET", "/public#/../api/messages", "", InvalidRequest},
		{"GET", "/../api/messages", "", InvalidRequest},
		{"GET", "/public//../api/messages", "", InvalidRequest},
		{"GET", "/api/mes%2573ages", writer, InvalidRequest},
		{"GET", "/api/messages%00", writer, InvalidRequest},
		{"GET", "/api/messages%ff", writer, InvalidRequest},
		{"GET", "http://api.example/api/messages", writer, InvalidRequest},
		{"GET", "", writer, InvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := &Request{Method: tt.method, Host: "api", Path: tt.path}
			if tt.token != "" {
				r.Authorization = []string{"Bearer " + tt.token}
			}
			d := e.az.Decide(context.Background(), r)
			assert.Equal(t, tt.want.String(), d.Outcome.String(), "rule %s, reason %v, detail %s", d.Rule, d.Reason, d.Detail)
			if tt.want == InvalidRequest {
				assert.Equal(t, 400, d.HTTPStatus())
				assert.Contains(t, headerOf(d.ClientHeaders(Challenges{Realm: "api"}), "www-authenticate"), `error="invalid_request"`)
			}
		})
	}
}

func TestUpstreamPathReadingsCanBeTurnedOff(t *testing.T) {
	e := newEnv(t, nil)
	p, err := LoadPolicy([]byte(pathsPolicy+"upstream_paths: {case_insensitive: false, trailing_slash: false, path_parameters: false}\n"), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	writer := e.mint(t, map[string]any{"scp": []string{"messages:write"}})
	for _, path := range []string{"/API/Messages", "/api/messages/", "/api/messages;x=1"} {
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + writer}})
		assert.Equal(t, Allow, d.Outcome, "%s: a Go upstream serves no protected handler here, the default rule judges it", path)
		assert.Equal(t, "default", d.Rule)
	}
}

func TestPolicyPathsMustBeCanonical(t *testing.T) {
	_, err := LoadPolicy([]byte("rules:\n  - match: {path: /api/%6Dessages}\n"), nil)
	assert.ErrorContains(t, err, `path "/api/%6Dessages" is not in canonical form: write "/api/messages"`)
	_, err = LoadPolicy([]byte("rules:\n  - match: {path_prefix: /a/../b}\n"), nil)
	assert.ErrorContains(t, err, `write "/b"`)
	_, err = LoadPolicy([]byte("rules:\n  - match: {path: /a%2Fb}\n"), nil)
	assert.ErrorContains(t, err, "encoded slash")
}

func TestTwoAuthorizationHeadersAreRefusedOnEveryFrontEnd(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, nil)

	t.Run("http", func(t *testing.T) {
		srv := httptest.NewServer(NewHTTPServer(e.az, HTTPOptions{Source: SourceEnvoy}))
		defer srv.Close()
		req, err := http.NewRequest("GET", srv.URL+"/api/messages", nil)
		require.NoError(t, err)
		req.Header.Add("Authorization", "Basic dXNlcjpwYXNz")
		req.Header.Add("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, 400, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`)
		assert.Empty(t, resp.Header.Get(HeaderSubject))
	})
	for name, raw := range map[string]bool{"grpc headers (joined)": false, "grpc header_map": true} {
		t.Run(name, func(t *testing.T) {
			client := dialCheck(t, e.az)
			req := checkRequest("/api/messages", nil, raw)
			h := req.Attributes.Request.Http
			if raw {
				h.HeaderMap.Headers = append(h.HeaderMap.Headers,
					&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Basic dXNlcjpwYXNz")},
					&corev3.HeaderValue{Key: "Authorization", RawValue: []byte("Bearer " + tok)})
			} else {
				h.Headers["authorization"] = "Basic dXNlcjpwYXNz,Bearer " + tok
			}
			resp, err := client.Check(context.Background(), req)
			require.NoError(t, err)
			assert.Equal(t, int32(codes.InvalidArgument), resp.GetStatus().GetCode())
			assert.Equal(t, int32(400), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
		})
	}
}

func TestRefusedPathOverGRPCAndHTTP(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, nil)
	resp, err := NewGRPCServer(e.az).Check(context.Background(),
		checkRequest("/public/..%2Fsecure", map[string]string{"authorization": "Bearer " + tok}, false))
	require.NoError(t, err)
	assert.Equal(t, int32(codes.InvalidArgument), resp.GetStatus().GetCode())
	assert.Equal(t, "path_encoded_slash", resp.GetStatus().GetMessage())
	denied := resp.GetDeniedResponse()
	assert.Equal(t, `{"error":"invalid_request","error_description":"The request path has an encoded slash or backslash"}`, denied.GetBody())
	assert.Nil(t, resp.GetOkResponse())

	srv := httptest.NewServer(NewHTTPServer(e.az, HTTPOptions{Source: SourceNginx}))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL+"/_authz", nil)
	require.NoError(t, err)
	req.Header.Set("X-Original-URI", "/public/..%2Fsecure")
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-Host", "api")
	req.Header.Set("Authorization", "Bearer "+tok)
	hresp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer hresp.Body.Close()
	assert.Equal(t, 400, hresp.StatusCode)
	assert.Empty(t, hresp.Header.Get(HeaderSubject))
}

func TestMissingRequestSourceIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(NewHTTPServer(e.az, HTTPOptions{Source: SourceNginx}))
	defer srv.Close()
	// nginx.conf without X-Original-URI: the subrequest's own path must not be judged.
	req, err := http.NewRequest("GET", srv.URL+"/_authz", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.mint(t, nil))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "The proxy did not say which request to authorize")
}

// FuzzDecisionOfCanonicalPath: for any request target, the decision equals the decision for
// its canonical path, or the target is refused. Tokens and policy are fixed; the path varies.
func FuzzDecisionOfCanonicalPath(f *testing.F) {
	e := newEnv(f, nil)
	p, err := LoadPolicy([]byte(pathsPolicy), []string{"default"})
	require.NoError(f, err)
	e.az.SetPolicy(p)
	tokens := []string{"", e.mint(f, nil), e.mint(f, map[string]any{"scp": []string{"messages:write"}}),
		e.mint(f, map[string]any{"scp": []string{"admin", "reports:read"}})}
	for _, s := range []string{"/public/x", "/api/messages", "/api/%6Dessages", "/public/../admin/x", "/API/messages/",
		"/public/..;/admin/", "/reports", "/a%2Fb", "//admin//x", "/public/%2e%2e/api/messages"} {
		for i := range tokens {
			f.Add(s, uint8(i), false)
			f.Add(s, uint8(i), true)
		}
	}
	f.Fuzz(func(t *testing.T, target string, tok uint8, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		r := &Request{Method: method, Host: "api", Path: target}
		if token := tokens[int(tok)%len(tokens)]; token != "" {
			r.Authorization = []string{"Bearer " + token}
		}
		d := e.az.Decide(context.Background(), r)
		if d.Outcome == InvalidRequest {
			return
		}
		canon := *r
		canon.Path = d.Path
		dc := e.az.Decide(context.Background(), &canon)
		if dc.Outcome != d.Outcome || dc.Rule != d.Rule || dc.Path != d.Path {
			t.Fatalf("%s %q: %s by %s; its canonical path %q: %s by %s", method, target, d.Outcome, d.Rule, d.Path, dc.Outcome, dc.Rule)
		}
	})
}

// BenchmarkDecidePathReadings is the decision for a cached token under a policy with path rules
// (pathsPolicy): an ordinary path, which no reading changes, and one that every reading does.
func BenchmarkDecidePathReadings(b *testing.B) {
	e := newEnv(b, nil)
	p, err := LoadPolicy([]byte(pathsPolicy), []string{"default"})
	if err != nil {
		b.Fatal(err)
	}
	e.az.SetPolicy(p)
	tok := e.mint(b, nil)
	for _, path := range []string{"/api/messages", "/API/Messages;x/"} {
		b.Run(path, func(b *testing.B) {
			r := &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + tok}}
			e.az.Decide(context.Background(), r)
			b.ReportAllocs()
			for b.Loop() {
				if d := e.az.Decide(context.Background(), r); d.Outcome != Allow {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}
