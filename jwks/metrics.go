package jwks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the key set metrics, labelled by issuer name. Register them on a registry you
// own and pass Observe(name) as Options.OnFetch.
type Metrics struct {
	fetches     *prometheus.CounterVec
	keys        *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

// NewMetrics creates the key set metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_jwks_fetches_total",
			Help: "Key set fetches, by issuer, trigger (startup, schedule, unknown_kid) and result (success, error).",
		}, []string{"issuer", "trigger", "result"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authz_jwks_keys",
			Help: "Usable signing keys in the current key set, by issuer.",
		}, []string{"issuer"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authz_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful key set fetch, by issuer.",
		}, []string{"issuer"}),
	}
	reg.MustRegister(m.fetches, m.keys, m.lastSuccess)
	return m
}

// Observe returns an Options.OnFetch that records fetches for the named issuer.
func (m *Metrics) Observe(issuer string) func(Trigger, error, int) {
	return func(trigger Trigger, err error, keys int) {
		if err != nil {
			m.fetches.WithLabelValues(issuer, string(trigger), "error").Inc()
			return
		}
		m.fetches.WithLabelValues(issuer, string(trigger), "success").Inc()
		m.keys.WithLabelValues(issuer).Set(float64(keys))
		m.lastSuccess.WithLabelValues(issuer).Set(float64(time.Now().Unix()))
	}
}
