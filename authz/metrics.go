package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the decision metrics. Register them on a registry you own (no globals).
type Metrics struct {
	checks  *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// NewMetrics creates the decision metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_checks_total",
			Help: "Authorization decisions, by decision, reason, front end (grpc, http) and authorization scheme (bearer, dpop, none).",
		}, []string{"decision", "reason", "frontend", "scheme"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authz_check_duration_seconds",
			Help:    "Time to decide, by front end (excluding the transport).",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 2},
		}, []string{"frontend"}),
	}
	reg.MustRegister(m.checks, m.latency)
	return m
}

func (m *Metrics) observe(frontend string, d *Decision, elapsed time.Duration) {
	if m == nil {
		return
	}
	reason := "ok"
	if d.Reason != nil {
		reason = d.Reason.Code
	}
	decision := d.Outcome.String()
	if d.DryRun() {
		decision = "dry_run_allow"
		reason = d.WouldBe.Reason.Code
	}
	scheme := d.Scheme
	if scheme == "" {
		scheme = "none"
	}
	m.checks.WithLabelValues(decision, reason, frontend, scheme).Inc()
	m.latency.WithLabelValues(frontend).Observe(elapsed.Seconds())
}
