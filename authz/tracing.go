package authz

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names this package's tracer.
const tracerName = "github.com/platformauth/envoy-okta-authz/authz"

// StartSpan starts the span of one decision as a child of the caller's trace: the trace context
// in the request's own headers (traceparent, which Envoy forwards in the CheckRequest and nginx
// and Traefik in the subrequest), or else the one already in ctx. With tracing off (a nil
// tracer) it does nothing and returns a nil span.
func StartSpan(ctx context.Context, tracer trace.Tracer, name string, carrier propagation.TextMapCarrier) (context.Context, trace.Span) {
	if tracer == nil {
		return ctx, nil
	}
	if carrier != nil {
		if sc := trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), carrier)); sc.IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	return tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

// untraced is the global tracer provider as the process starts: until tracing is set up, a
// no-op that still costs five allocations per span.
var untraced = otel.GetTracerProvider()

// NewTracer takes the tracer from the global provider once, when a front end is built (after
// tracing is set up), rather than looking it up on every request; nil when tracing is off.
func NewTracer() trace.Tracer {
	tp := otel.GetTracerProvider()
	if tp == untraced {
		return nil
	}
	return tp.Tracer(tracerName)
}

// EndSpan records the decision on the span and ends it.
func EndSpan(span trace.Span, d *Decision) {
	if span == nil {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{attribute.String("authz.decision", d.Outcome.String()), attribute.String("authz.rule", d.Rule)}
	if d.Reason != nil {
		attrs = append(attrs, attribute.String("authz.reason", d.Reason.Code))
	}
	if d.Outcome == Unavailable {
		span.SetStatus(codes.Error, d.Reason.Code)
	}
	span.SetAttributes(attrs...)
	span.End()
}
