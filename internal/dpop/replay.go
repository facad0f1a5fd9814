package dpop

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ReplayStore remembers proofs for the time they could be replayed. FirstUse records id (the
// hash of a proof's key thumbprint and jti) for ttl and reports whether it was unseen; owner is
// the proof key's thumbprint, which a store may use to keep one key's flood from displacing
// other keys' entries. An error means the store could not say: the proof must not be accepted.
type ReplayStore interface {
	FirstUse(ctx context.Context, owner string, id [32]byte, ttl time.Duration) (bool, error)
}

// ErrStoreFull is the memory store's answer when every entry is live and it holds its maximum.
var ErrStoreFull = errors.New("dpop: replay store full")

// MemoryOptions bound a MemoryStore.
type MemoryOptions struct {
	// Max bounds the entries (default 100,000: about 10 MiB). PerKey bounds one key's share
	// (default Max/10): a key that sends more proofs within the window evicts its own oldest
	// entries — replays it could make anyway, holding the key — never another key's.
	Max, PerKey int
	Now         func() time.Time
}

// MemoryStore is a ReplayStore in this process's memory: proofs replayed on another replica
// go unnoticed (RedisStore shares them).
type MemoryStore struct {
	mu        sync.Mutex // guards everything below
	expires   map[[32]byte]int64
	byOwner   map[string][]entry // each owner's entries, oldest first
	max       int
	perKey    int
	now       func() time.Time
	lastSweep time.Time
}

type entry struct {
	id      [32]byte
	expires int64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(o MemoryOptions) *MemoryStore {
	if o.Max <= 0 {
		o.Max = 100_000
	}
	if o.PerKey <= 0 {
		o.PerKey = max(o.Max/10, 1)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &MemoryStore{expires: map[[32]byte]int64{}, byOwner: map[string][]entry{}, max: o.Max, perKey: o.PerKey, now: o.Now}
}

// FirstUse implements ReplayStore. When the store is full of live entries it refuses (the
// proof is not accepted) rather than forget a live one; it sweeps expired entries at most once
// a second, so a flood cannot make every request pay for a sweep.
func (m *MemoryStore) FirstUse(_ context.Context, owner string, id [32]byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	n := now.UnixNano()
	if exp, ok := m.expires[id]; ok && exp > n {
		return false, nil
	}
	es := m.byOwner[owner]
	for len(es) > 0 && (es[0].expires <= n || len(es) >= m.perKey) {
		if m.expires[es[0].id] == es[0].expires {
			delete(m.expires, es[0].id)
		}
		es = es[1:]
	}
	if len(m.expires) >= m.max && now.Sub(m.lastSweep) >= time.Second {
		m.lastSweep = now
		m.sweep(n)
	}
	if len(m.expires) >= m.max {
		m.byOwner[owner] = es
		return false, ErrStoreFull
	}
	e := entry{id: id, expires: now.Add(ttl).UnixNano()}
	m.expires[id] = e.expires
	m.byOwner[owner] = append(es, e)
	return true, nil
}

func (m *MemoryStore) sweep(n int64) {
	for owner, es := range m.byOwner {
		kept := es[:0]
		for _, e := range es {
			if e.expires > n {
				kept = append(kept, e)
			} else if m.expires[e.id] == e.expires {
				delete(m.expires, e.id)
			}
		}
		if len(kept) == 0 {
			delete(m.byOwner, owner)
		} else {
			m.byOwner[owner] = kept
		}
	}
}

// Len is the number of proofs remembered.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.expires)
}

// Fallback is a ReplayStore that asks Primary and, when Primary cannot answer, Local — or,
// without a Local, passes the error on, so the proof is not accepted. OnError hears every
// failure of Primary either way (for a log line and a metric): an outage is never silent, and
// never a silent accept.
type Fallback struct {
	Primary, Local ReplayStore
	OnError        func(error)
}

// FirstUse implements ReplayStore.
func (f *Fallback) FirstUse(ctx context.Context, owner string, id [32]byte, ttl time.Duration) (bool, error) {
	first, err := f.Primary.FirstUse(ctx, owner, id, ttl)
	if err == nil {
		return first, nil
	}
	if f.OnError != nil {
		f.OnError(err)
	}
	if f.Local == nil {
		return false, err
	}
	return f.Local.FirstUse(ctx, owner, id, ttl)
}
