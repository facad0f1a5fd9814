// Package tracingtest records the spans a test makes, and names a caller's trace context to
// continue: for the front ends' tests that a decision's span is a child of the proxy's.
package tracingtest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A caller's trace context: the trace and span ids, and the traceparent header naming them.
const (
	CallerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	CallerSpan  = "00f067aa0ba902b7"
	Traceparent = "00-" + CallerTrace + "-" + CallerSpan + "-01"
)

// Install records spans in memory for the test (W3C trace context propagation), and restores
// the no-op globals after it.
func Install(t *testing.T) *tracetest.InMemoryExporter {
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
