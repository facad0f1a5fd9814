package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/platformauth/envoy-okta-authz/token"
)

// Benchmarks of the HTTP front end. Run: go test ./httpapi -run XXX -bench . -benchmem

// BenchmarkHTTPHot is the HTTP decision API's handler for a cached token, as nginx asks.
func BenchmarkHTTPHot(b *testing.B) {
	e := newEnv(b, nil)
	s := New(e.az, Options{})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for k, v := range map[string]string{"X-Original-Uri": "/api/messages", "X-Original-Method": "GET",
		"X-Original-Host": "api.example.com", "X-Forwarded-Proto": "https", "User-Agent": "curl/8.5.0",
		"Accept": "*/*", "X-Request-Id": "5b0c1c44", "Authorization": "Bearer " + e.mint(b, nil)} {
		req.Header.Set(k, v)
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatal(w.status)
		}
	}
}

// BenchmarkHTTPWarm is the HTTP decision API's handler for tokens past the hot tier.
func BenchmarkHTTPWarm(b *testing.B) {
	e := newEnv(b, nil)
	s := New(e.az, Options{})
	reqs := make([]*http.Request, token.HotTierSize+token.HotTierSize/4)
	w := &discardWriter{h: http.Header{}}
	for i := range reqs {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		for k, v := range map[string]string{"X-Original-Uri": "/api/messages", "X-Original-Method": "GET",
			"X-Original-Host": "api.example.com", "X-Forwarded-Proto": "https",
			"Authorization": "Bearer " + e.mint(b, map[string]any{"jti": fmt.Sprintf("AT.%d", i)})} {
			req.Header.Set(k, v)
		}
		reqs[i] = req
		s.ServeHTTP(w, req)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, reqs[i%len(reqs)])
		if w.status != http.StatusOK {
			b.Fatal(w.status)
		}
		i++
	}
}

// discardWriter is a ResponseWriter that keeps only the status, so the benchmark measures the
// handler.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
