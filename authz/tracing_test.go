package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// installTracing records spans in memory for the test, and restores the no-op globals after.
func installTracing(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})
	return exp
}

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

func TestCheckContinuesTheCallersTrace(t *testing.T) {
	exp := installTracing(t)
	e := newEnv(t, nil)
	for _, raw := range []bool{false, true} {
		exp.Reset()
		_, err := NewGRPCServer(e.az).Check(context.Background(), checkRequest("/api/messages", map[string]string{"traceparent": traceparent}, raw))
		require.NoError(t, err)
		spans := exp.GetSpans()
		require.Len(t, spans, 1)
		assert.Equal(t, "authz.Check", spans[0].Name)
		assert.Equal(t, callerTrace, spans[0].SpanContext.TraceID().String(), "same trace as the caller")
		assert.Equal(t, callerSpan, spans[0].Parent.SpanID().String(), "child of the caller's span")
		assert.Contains(t, spans[0].Attributes, attrString("authz.decision", "no_credentials"))
	}
}

func TestHTTPCheckContinuesTheCallersTrace(t *testing.T) {
	exp := installTracing(t)
	e := newEnv(t, nil)
	req := httptest.NewRequest("GET", "/api/messages", nil)
	req.Header.Set("traceparent", traceparent)
	rec := httptest.NewRecorder()
	NewHTTPServer(e.az, HTTPOptions{Source: SourceEnvoy}).ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	assert.Equal(t, callerTrace, spans[0].SpanContext.TraceID().String())
	assert.Equal(t, callerSpan, spans[0].Parent.SpanID().String())
}

func attrString(k, v string) attribute.KeyValue { return attribute.String(k, v) }
