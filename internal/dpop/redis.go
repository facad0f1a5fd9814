package dpop

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisStore is a ReplayStore shared by every replica: SET key 1 NX PX ttl is the atomic "first
// time seen" test.
//
// A check is budgeted, never a connection's set-up. Checks are sent by a few senders, each
// with a connection of its own that it sets up — TCP, TLS, HELLO with the credentials, up to
// ConnectTimeout — before it takes any check, and sets up again when it fails (the others
// then check theirs): a check only ever travels on a connection that is ready. Concurrent
// checks share a pipeline, so a check costs one round trip, up to two when every sender is
// away. FirstUse waits at most Timeout for its answer, then says the store could not answer
// (the caller decides what that means); with no connection set up it says so at once.
//
// Redis must never evict the store's keys: a proof evicted before it expires would pass again
// as unseen. The store asks Redis for its maxmemory and maxmemory-policy before its first check
// and every 30 s, and refuses to answer while Redis may evict (a maxmemory and a policy other
// than noeviction). With noeviction a full Redis refuses the SET (an error: the proof is not
// accepted). A Redis that does not let it ask (CONFIG renamed away or denied by an ACL, as in
// some managed offerings) is used with a warning: the operator must make sure.
type RedisStore struct {
	client  *redis.Client
	timeout time.Duration
	connect time.Duration
	prefix  string
	log     *slog.Logger
	queue   chan *redisCall
	ready   atomic.Int32 // senders with a connection set up
	waiting atomic.Int32 // senders waiting for checks
	dropped signal       // a sender's connection failed: the others check theirs
	policy  atomic.Pointer[policyState]
	ctx     context.Context // done on Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db, or rediss:// for TLS (go-redis ParseURL; its
	// pool_size parameter sets the number of senders, default DefaultRedisSenders).
	URL string
	// Timeout is how long a check waits for its answer (default 250ms).
	Timeout time.Duration
	// ConnectTimeout bounds setting up a connection, which no check waits for (default 5s).
	ConnectTimeout time.Duration
	// Log hears what Redis's eviction policy means for the store (nil: nothing is logged).
	Log *slog.Logger
}

const (
	// DefaultRedisTimeout is how long a check waits for Redis by default.
	DefaultRedisTimeout = 250 * time.Millisecond
	// DefaultRedisSenders is how many batches of checks may be in flight at once by default.
	DefaultRedisSenders = 16
	// maxBatch bounds the checks one pipeline carries.
	maxBatch = 256
	// policyInterval is how often Redis's eviction policy is read again; unreadPolicyInterval
	// while it could not be read yet (checks are refused meanwhile).
	policyInterval, unreadPolicyInterval = 30 * time.Second, time.Second
	// idlePing is how long a sender's connection may sit idle before the sender pings it.
	idlePing = 30 * time.Second
	// lingerFor and lingerMax bound how long the last free sender waits for more checks to
	// send with the first: after the last one came, and in all.
	lingerFor, lingerMax = 2 * time.Millisecond, 10 * time.Millisecond
)

// redisCall is one check on its way to Redis.
type redisCall struct {
	key  string
	ttl  time.Duration
	done chan redisAnswer // buffered: a sender never waits for a check that gave up
	gone atomic.Bool      // the check stopped waiting: not worth sending any more
}

type redisAnswer struct {
	first bool
	err   error
}

// policyState is what the store knows of Redis's eviction policy: err refuses every check.
type policyState struct {
	err     error
	unread  bool   // not read yet: err says why
	summary string // what was read, to log a change
}

// NewRedisStore returns a store on the Redis server at o.URL, and starts its senders, which
// set up their connections in the background (Close stops them).
func NewRedisStore(o RedisOptions) (*RedisStore, error) {
	opts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("dpop: replay store %q: %w", redactURL(o.URL), err)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	senders := opts.PoolSize
	if senders <= 0 {
		senders = DefaultRedisSenders
	}
	// Each sender holds one connection; the policy check takes one more.
	opts.PoolSize, opts.MinIdleConns, opts.PipelinePoolSize = senders+1, 0, -1
	opts.DialTimeout, opts.DialerRetries = o.ConnectTimeout, 1
	opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = o.ConnectTimeout, o.ConnectTimeout, o.ConnectTimeout
	opts.ContextTimeoutEnabled = true
	opts.ConnMaxIdleTime = -1 // a sender's connection is worth keeping
	opts.MaxRetries = -1      // a SET NX sent twice would call the proof a replay of itself
	// One round trip (HELLO) sets a connection up: no CLIENT SETINFO, no maintenance
	// notifications handshake.
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	ctx, stop := context.WithCancel(context.Background())
	r := &RedisStore{client: redis.NewClient(opts), timeout: o.Timeout, connect: o.ConnectTimeout,
		prefix: "authz:dpop:", log: o.Log, queue: make(chan *redisCall, senders*maxBatch), ctx: ctx, stop: stop}
	r.policy.Store(&policyState{unread: true, err: errors.New("redis: its eviction policy has not been read yet")})
	r.wg.Add(senders + 1)
	for range senders {
		go r.send()
	}
	go r.keep()
	return r, nil
}

// FirstUse implements ReplayStore.
func (r *RedisStore) FirstUse(ctx context.Context, u Use) (bool, error) {
	if err := r.policy.Load().err; err != nil {
		return false, err
	}
	if r.ready.Load() == 0 {
		// Redis is down, or the store is only starting: say so now rather than at the budget.
		return false, errors.New("redis: no connection set up")
	}
	// Redis counts the time to live on its own clock.
	ttl := time.Until(u.Expires)
	if ttl < time.Second {
		ttl = time.Second
	}
	c := &redisCall{key: r.prefix + hex.EncodeToString(u.ID[:]), ttl: ttl, done: make(chan redisAnswer, 1)}
	select {
	case r.queue <- c:
	default:
		return false, errors.New("redis: too many checks waiting")
	}
	budget := time.NewTimer(r.timeout)
	defer budget.Stop()
	select {
	case a := <-c.done:
		if a.err != nil {
			return false, fmt.Errorf("redis: %w", a.err)
		}
		return a.first, nil
	case <-budget.C:
		c.gone.Store(true)
		return false, fmt.Errorf("redis: no answer within %s", r.timeout)
	case <-ctx.Done():
		c.gone.Store(true)
		return false, ctx.Err()
	}
}

// send is a sender: it sets up a connection, sends the waiting checks on it, and sets up
// another when it fails, until Close.
func (r *RedisStore) send() {
	defer r.wg.Done()
	var wait time.Duration // before connecting again: none after a working connection failed
	for {
		if wait > 0 {
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		conn := r.client.Conn()
		err := r.ping(conn)
		if err == nil {
			wait = 0
			r.ready.Add(1)
			err = r.serve(conn)
			r.ready.Add(-1)
		} else {
			wait = min(max(2*wait, 100*time.Millisecond), 5*time.Second)
		}
		_ = conn.Close()
		if err == nil || r.ctx.Err() != nil { // closed
			return
		}
	}
}

// serve sends the checks waiting, as one pipeline, on conn, until conn fails (its error) or
// the store is closed (nil). An idle connection is pinged now and then, so that a connection
// Redis or the network dropped is set up again before a check needs it.
func (r *RedisStore) serve(conn *redis.Conn) error {
	batch := make([]*redisCall, 0, maxBatch)
	cmds := make([]*redis.BoolCmd, 0, maxBatch)
	idle := time.NewTicker(idlePing)
	defer idle.Stop()
	for {
		var first *redisCall
		r.waiting.Add(1)
		select {
		case <-r.ctx.Done():
			r.waiting.Add(-1)
			return nil
		case <-idle.C:
			r.waiting.Add(-1)
			if err := r.ping(conn); err != nil {
				return err
			}
			continue
		case <-r.dropped.wait():
			r.waiting.Add(-1)
			if err := r.ping(conn); err != nil {
				return err
			}
			continue
		case first = <-r.queue:
			r.waiting.Add(-1)
		}
		batch = r.collect(append(batch[:0], first))
		live := batch[:0]
		for _, c := range batch {
			if !c.gone.Load() {
				live = append(live, c)
			}
		}
		if len(live) == 0 {
			continue
		}
		// A slow answer is still an answer (to a check that waits no more, it records the
		// proof all the same); only a link silent for ConnectTimeout is given up.
		ctx, cancel := context.WithTimeout(r.ctx, r.connect)
		cmds = cmds[:0]
		_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range live {
				cmds = append(cmds, p.SetNX(ctx, c.key, 1, c.ttl))
			}
			return nil
		})
		cancel()
		// Each command holds its own answer: its reply, or the failure that left it without
		// one (go-redis sets it on each).
		for i, c := range live {
			first, cerr := cmds[i].Result()
			c.done <- redisAnswer{first, cerr}
		}
		if err != nil && !isRedisError(err) {
			// Redis (or the network) may have dropped the other senders' connections too:
			// they find out now, not on the checks they take next.
			r.dropped.signal()
			return err
		}
		idle.Reset(idlePing)
	}
}

// ping checks a sender's connection.
func (r *RedisStore) ping(conn *redis.Conn) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.connect)
	defer cancel()
	return conn.Ping(ctx).Err()
}

// signal wakes every sender waiting for it at once.
type signal struct {
	mu sync.Mutex // guards ch
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) signal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// collect adds the checks waiting to batch. The last sender free to take checks lingers for
// more while they keep coming (lingerFor after the last one, lingerMax in all): checks that
// come while every sender is away wait a round trip for the first to come back, so the rest
// of a burst is better sent now, in this pipeline.
func (r *RedisStore) collect(batch []*redisCall) []*redisCall {
	linger := r.waiting.Load() == 0
	var timer *time.Timer
	deadline := time.Now().Add(lingerMax)
	for len(batch) < maxBatch {
		select {
		case c := <-r.queue:
			batch = append(batch, c)
			continue
		default:
		}
		wait := min(lingerFor, time.Until(deadline))
		if !linger || wait <= 0 {
			break
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case c := <-r.queue:
			batch = append(batch, c)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// keep reads the eviction policy, then again every policyInterval (every unreadPolicyInterval
// while it could not be read), until Close.
func (r *RedisStore) keep() {
	defer r.wg.Done()
	for {
		r.checkPolicy(r.ctx)
		interval := policyInterval
		if r.policy.Load().unread {
			interval = unreadPolicyInterval
		}
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// checkPolicy reads Redis's maxmemory and maxmemory-policy and sets what FirstUse answers: an
// error while Redis may evict keys; nothing when it may not, or when it does not let the store
// ask (CONFIG renamed away, or denied by an ACL). When Redis cannot be asked at all the policy
// stays as it was, or, never read yet, refuses with the reason.
func (r *RedisStore) checkPolicy(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.connect+r.timeout)
	defer cancel()
	cfg, err := r.client.ConfigGet(ctx, "maxmemory*").Result()
	prev := r.policy.Load()
	var next *policyState
	switch {
	case redis.HasErrorPrefix(err, "NOPERM") || redis.HasErrorPrefix(err, "unknown command"):
		next = &policyState{summary: "unreadable"}
		if prev.summary != next.summary {
			r.log.Warn("DPoP replay store: cannot read Redis's eviction policy: make sure maxmemory-policy is noeviction (or maxmemory 0), or replayed proofs may pass once Redis is full",
				"error", err)
		}
	case err != nil:
		if prev.unread {
			r.policy.Store(&policyState{unread: true, err: fmt.Errorf("redis: cannot read its eviction policy yet: %w", err)})
		}
		return
	case cfg["maxmemory"] != "0" && cfg["maxmemory-policy"] != "noeviction":
		next = &policyState{summary: "evicting " + cfg["maxmemory-policy"],
			err: fmt.Errorf("redis: maxmemory %s with maxmemory-policy %s may evict replay entries: set maxmemory-policy noeviction", cfg["maxmemory"], cfg["maxmemory-policy"])}
		if prev.summary != next.summary {
			r.log.Error("DPoP replay store: Redis may evict proofs before they expire: every DPoP proof is refused until maxmemory-policy is noeviction",
				"maxmemory", cfg["maxmemory"], "maxmemory_policy", cfg["maxmemory-policy"])
		}
	default:
		next = &policyState{summary: "safe"}
		if !prev.unread && prev.summary != next.summary {
			r.log.Info("DPoP replay store: Redis does not evict proofs", "maxmemory", cfg["maxmemory"], "maxmemory_policy", cfg["maxmemory-policy"])
		}
	}
	r.policy.Store(next)
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// Close stops the store and closes its connections.
func (r *RedisStore) Close() error {
	r.stop()
	r.wg.Wait()
	return r.client.Close()
}

// redactURL drops a password from a Redis URL, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
