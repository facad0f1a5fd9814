package dpop

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is a ReplayStore shared by every replica: SET key 1 NX PX ttl is the atomic "first
// time seen" test. Every call is bounded by the timeouts below, so an unreachable Redis costs a
// check at most Timeout, never a hang; the caller decides what an error means.
type RedisStore struct {
	client  *redis.Client
	timeout time.Duration
	prefix  string
}

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db, or rediss:// for TLS (go-redis ParseURL).
	URL string
	// Timeout bounds each call, connecting included (default 250ms).
	Timeout time.Duration
}

// NewRedisStore returns a store on the Redis server at o.URL. It does not connect yet.
func NewRedisStore(o RedisOptions) (*RedisStore, error) {
	opts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("dpop: replay store %q: %w", redactURL(o.URL), err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opts.MaxRetries = -1 // one attempt: a retry would double the time a check may wait
	opts.ContextTimeoutEnabled = true
	return &RedisStore{client: redis.NewClient(opts), timeout: o.Timeout, prefix: "authz:dpop:"}, nil
}

// FirstUse implements ReplayStore.
func (r *RedisStore) FirstUse(ctx context.Context, u Use) (bool, error) {
	// Redis counts the time to live on its own clock.
	ttl := time.Until(u.Expires)
	if ttl < time.Second {
		ttl = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ok, err := r.client.SetNX(ctx, r.prefix+hex.EncodeToString(u.ID[:]), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redis: %w", err)
	}
	return ok, nil
}

// Ping checks that Redis answers.
func (r *RedisStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.client.Ping(ctx).Err()
}

// Close closes the connections.
func (r *RedisStore) Close() error { return r.client.Close() }

// redactURL drops a password from a Redis URL, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
