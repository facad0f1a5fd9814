package token

import (
	"context"
	"fmt"
	"testing"
)

// Benchmarks of verification. Run: go test ./token -run XXX -bench . -benchmem

func BenchmarkBearerToken(b *testing.B) {
	v := []string{"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseAuthorization(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCold verifies a distinct token each time: RS256 and claims, no cache.
func BenchmarkVerifyCold(b *testing.B) {
	e := newEnv(b, nil)
	e.v.cache = nil
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = e.mint(b, map[string]any{"jti": fmt.Sprintf("AT.%d", i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := e.v.Verify(context.Background(), tokens[i%len(tokens)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
