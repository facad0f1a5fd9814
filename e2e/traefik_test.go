package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// traefik plays Traefik v3 with deploy/traefik/dynamic.yml (no Traefik binary can be built or
// installed here), as its source does it: pkg/middlewares/auth/forward.go at v3.7 (ServeHTTP,
// writeHeader, filterForwardRequestHeaders) and the routers of the file.
type traefik struct {
	authRequestHeaders  []string
	authResponseHeaders []string
	responseRegex       *regexp.Regexp
	trustForwardHeader  bool
	stripOnHealth       []string // the health router's headers middleware: names set to ""
	stripAfterAuth      []string // the api router's headers middleware after forwardAuth
	authURL             string   // the authz service's HTTP decision API
}

func loadTraefik(t *testing.T, authURL string) *traefik {
	t.Helper()
	raw, err := os.ReadFile("../deploy/traefik/dynamic.yml")
	require.NoError(t, err)
	var cfg struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth *struct {
					Address                  string   `json:"address"`
					TrustForwardHeader       bool     `json:"trustForwardHeader"`
					AuthRequestHeaders       []string `json:"authRequestHeaders"`
					AuthResponseHeaders      []string `json:"authResponseHeaders"`
					AuthResponseHeadersRegex string   `json:"authResponseHeadersRegex"`
				} `json:"forwardAuth"`
				Headers *struct {
					CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
				} `json:"headers"`
			} `json:"middlewares"`
			Routers map[string]struct {
				Rule        string   `json:"rule"`
				Middlewares []string `json:"middlewares"`
			} `json:"routers"`
		} `json:"http"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	fa := cfg.HTTP.Middlewares["authz"].ForwardAuth
	require.NotNil(t, fa, "dynamic.yml has the authz forwardAuth middleware")
	tr := &traefik{authRequestHeaders: fa.AuthRequestHeaders, authResponseHeaders: fa.AuthResponseHeaders,
		trustForwardHeader: fa.TrustForwardHeader, authURL: authURL}
	if fa.AuthResponseHeadersRegex != "" {
		tr.responseRegex = regexp.MustCompile(fa.AuthResponseHeadersRegex)
	}
	require.Equal(t, "Path(`/healthz`)", cfg.HTTP.Routers["health"].Rule)
	for _, m := range cfg.HTTP.Routers["health"].Middlewares {
		for name, v := range cfg.HTTP.Middlewares[m].Headers.CustomRequestHeaders {
			if v == "" {
				tr.stripOnHealth = append(tr.stripOnHealth, name)
			}
		}
	}
	api := cfg.HTTP.Routers["api"].Middlewares
	require.Equal(t, "authz", api[0], "the api router asks the authz service first")
	for _, m := range api[1:] {
		for name, v := range cfg.HTTP.Middlewares[m].Headers.CustomRequestHeaders {
			if v == "" {
				tr.stripAfterAuth = append(tr.stripAfterAuth, name)
			}
		}
	}
	return tr
}

// serve handles one raw client request the way Traefik would and returns the response the
// client gets (and the upstream's, when the request was forwarded).
func (tr *traefik) serve(t *testing.T, upstreamAddr, method, target string, header http.Header) (*http.Response, error) {
	// Traefik is a Go server: the request is parsed by net/http.
	var raw strings.Builder
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: api.example\r\n", method, target)
	_ = header.Write(&raw)
	raw.WriteString("\r\n")
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw.String())))
	if err != nil {
		return &http.Response{StatusCode: 400, Header: http.Header{}}, nil
	}
	req.RemoteAddr = "127.0.0.1:50000"
	// The routers: Path(`/healthz`) is longer, so it is tried first; it matches the decoded path.
	if req.URL.Path == "/healthz" {
		for _, name := range tr.stripOnHealth {
			req.Header.Del(name)
		}
		return forward(upstreamAddr, req)
	}

	// writeHeader: the client's headers, filtered by authRequestHeaders, then Traefik's own.
	authReq, err := http.NewRequest(http.MethodGet, tr.authURL, nil)
	require.NoError(t, err)
	for k, vs := range req.Header {
		if len(tr.authRequestHeaders) == 0 || containsFold(tr.authRequestHeaders, k) {
			authReq.Header[k] = append([]string(nil), vs...)
		}
	}
	set := func(k, own string) {
		if v := req.Header.Get(k); v != "" && tr.trustForwardHeader {
			authReq.Header.Set(k, v)
			return
		}
		authReq.Header.Set(k, own)
	}
	authReq.Header.Set("X-Forwarded-For", "127.0.0.1")
	set("X-Forwarded-Method", req.Method)
	set("X-Forwarded-Proto", "http")
	set("X-Forwarded-Host", req.Host)
	set("X-Forwarded-Uri", req.URL.RequestURI())
	resp, err := (&http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(authReq)
	if err != nil {
		return &http.Response{StatusCode: 500, Header: http.Header{}}, nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return resp, nil // status, headers and body go back to the client
	}
	for _, name := range tr.authResponseHeaders {
		req.Header.Del(name)
		if vs := resp.Header.Values(name); len(vs) > 0 {
			req.Header[http.CanonicalHeaderKey(name)] = vs
		}
	}
	if tr.responseRegex != nil {
		for k := range req.Header {
			if tr.responseRegex.MatchString(k) {
				req.Header.Del(k)
			}
		}
		for k, vs := range resp.Header {
			if tr.responseRegex.MatchString(k) {
				req.Header[k] = vs
			}
		}
	}
	for _, name := range tr.stripAfterAuth {
		req.Header.Del(name)
	}
	return forward(upstreamAddr, req)
}

// forward sends req upstream as Traefik's reverse proxy does: the parsed URL's request URI.
func forward(upstreamAddr string, req *http.Request) (*http.Response, error) {
	return rawRequest(upstreamAddr, req.Method, req.URL.RequestURI(), req.Header)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// TestTraefikClientCannotChooseTheJudgedRequest: behind deploy/traefik/dynamic.yml a client's
// X-Original-URI (or X-Forwarded-Uri) never decides which request is judged.
func TestTraefikClientCannotChooseTheJudgedRequest(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	tr := loadTraefik(t, s.httpTraefikURL)
	for _, spoof := range []map[string]string{
		{"X-Original-Uri": "/healthz", "X-Original-Method": "GET", "X-Original-Host": "api.example"},
		{"X-Forwarded-Uri": "/healthz", "X-Forwarded-Method": "OPTIONS"},
	} {
		h := http.Header{"Authorization": {"Bearer " + s.token(t, "messages:write")}}
		for k, v := range spoof {
			h.Set(k, v)
		}
		resp, err := tr.serve(t, host(s.apiURL), "GET", "/api/messages", h)
		require.NoError(t, err)
		require.Equal(t, 403, resp.StatusCode, "%v: judged as GET /api/messages", spoof)
	}
}

// TestTraefikKeepsTheTokenFromTheAPI: after forwardAuth the api router drops Authorization and
// DPoP, as the service's default identity asks.
func TestTraefikKeepsTheTokenFromTheAPI(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	tr := loadTraefik(t, s.httpTraefikURL)
	var mu sync.Mutex
	var got http.Header
	s.served.Store(ptr(func(r *http.Request, _ int) {
		mu.Lock()
		defer mu.Unlock()
		got = r.Header.Clone()
	}))
	resp, err := tr.serve(t, host(s.apiURL), "GET", "/secure", http.Header{"Authorization": {"Bearer " + s.token(t, "messages:read")}})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	mu.Lock()
	defer mu.Unlock()
	require.NotNil(t, got)
	require.Empty(t, got.Values("Authorization"))
	require.Equal(t, "test-client", got.Get("X-Authz-Subject"))
}
