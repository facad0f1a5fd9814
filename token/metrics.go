package token

import "github.com/prometheus/client_golang/prometheus"

// RegisterCacheMetrics exposes the verified-token cache's size and hit counts on reg.
func (v *Verifier) RegisterCacheMetrics(reg prometheus.Registerer) {
	if v.cache == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_token_cache_entries",
			Help: "Verified tokens in the cache.",
		}, func() float64 { return float64(v.cache.len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_token_cache_hits_total",
			Help: "Verifications answered from the token cache (positive or negative).",
		}, func() float64 { return float64(v.cache.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_token_cache_misses_total",
			Help: "Verifications that had to check the signature.",
		}, func() float64 { return float64(v.cache.misses.Load()) }),
	)
}
