package authzcmd

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/platformauth/envoy-okta-authz/internal/dpop"
)

// buildDPoP makes the DPoP proof verifier the flags describe, with its replay store; nil when
// --dpop-algs is empty (the DPoP scheme off). closeStore releases the store's connections.
func buildDPoP(c *config, log *slog.Logger, reg prometheus.Registerer) (v *dpop.Verifier, closeStore func() error, err error) {
	closeStore = func() error { return nil }
	if len(c.DPoPAlgs) == 0 {
		return nil, closeStore, nil
	}
	memory := dpop.NewMemoryStore(dpop.MemoryOptions{Max: c.DPoPReplayEntries})
	stat := func(f func(dpop.MemoryStats) float64) func() float64 {
		return func() float64 { return f(memory.Stats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_dpop_replay_entries",
			Help: "DPoP proofs remembered in this replica's memory.",
		}, stat(func(s dpop.MemoryStats) float64 { return float64(s.Entries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_dpop_replay_evicted_total",
			Help: "Live DPoP proofs this replica's memory forgot to make room, each raising its key's watermark: a flood of proofs, or --dpop-replay-cache-size too small for the traffic.",
		}, stat(func(s dpop.MemoryStats) float64 { return float64(s.Evicted) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_dpop_replay_too_old_total",
			Help: "DPoP proofs this replica's memory refused as too old: issued no later than a forgotten proof of their key (dpop_iat_old).",
		}, stat(func(s dpop.MemoryStats) float64 { return float64(s.TooOld) })),
	)
	var store dpop.ReplayStore = memory
	if c.DPoPReplayStore != "memory" {
		redis, err := dpop.NewRedisStore(dpop.RedisOptions{URL: c.DPoPReplayStore, Timeout: c.DPoPStoreTimeout, Log: log})
		if err != nil {
			return nil, closeStore, err
		}
		closeStore = redis.Close
		errorsTotal := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_dpop_replay_store_errors_total",
			Help: "Calls to the Redis DPoP replay store that failed (the proof is refused, or checked in memory with --dpop-replay-store-failure local).",
		})
		reg.MustRegister(errorsTotal)
		fb := &dpop.Fallback{Primary: redis}
		if c.DPoPStoreFailure == "local" {
			fb.Local = memory
		}
		var lastLog atomic.Int64
		fb.OnError = func(err error) {
			errorsTotal.Inc()
			// One line every 10 s at most: an outage must be seen, not flood the log.
			if now := time.Now().UnixNano(); now-lastLog.Load() > int64(10*time.Second) {
				lastLog.Store(now)
				log.Warn("DPoP replay store unavailable", "error", err, "on_failure", c.DPoPStoreFailure)
			}
		}
		store = fb
	}
	v, err = dpop.New(dpop.Options{Algs: c.DPoPAlgs, MaxAge: c.DPoPMaxAge, Leeway: c.Leeway, Replay: store})
	if err != nil {
		_ = closeStore()
		return nil, closeStore, fmt.Errorf("dpop: %w", err)
	}
	return v, closeStore, nil
}
