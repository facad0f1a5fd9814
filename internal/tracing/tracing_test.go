package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnabled(t *testing.T) {
	assert.False(t, Enabled(env(nil)), "off unless configured")
	assert.True(t, Enabled(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})))
	assert.True(t, Enabled(env(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})))
	assert.True(t, Enabled(env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp"})))
	assert.False(t, Enabled(env(map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})))
	assert.False(t, Enabled(env(map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})))
}

func TestSetupRejectsUnsupported(t *testing.T) {
	_, err := Setup(context.Background(), env(map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}), "authz")
	assert.ErrorContains(t, err, "not supported")
	_, err = Setup(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}), "authz")
	assert.ErrorContains(t, err, "not supported")
}

// TestSetupExportsOverOTLPHTTP sends a span to a fake collector on loopback.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	var got atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			_, _ = io.Copy(io.Discard, r.Body)
			got.Add(1)
		}
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	prev := otel.GetTracerProvider()
	defer otel.SetTracerProvider(prev)
	shutdown, err := Setup(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}), "authz")
	require.NoError(t, err)
	_, span := otel.Tracer("test").Start(context.Background(), "span")
	span.End()
	require.NoError(t, shutdown(context.Background()), "shutdown flushes")
	assert.Equal(t, int32(1), got.Load(), "one export request reached the collector")
}
