package dpop

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// Use is one proof as a ReplayStore records it.
type Use struct {
	// ID identifies the proof: the SHA-256 of its key's thumbprint and its jti.
	ID [32]byte
	// Owner is the proof key's RFC 7638 thumbprint.
	Owner string
	// IssuedAt is the proof's iat. Expires is when no verifier accepts the proof any more (iat
	// plus the max age and twice the leeway): it must be remembered until then.
	IssuedAt, Expires time.Time
}

// ReplayStore remembers proofs for as long as they could be replayed. FirstUse records u and
// reports whether it was unseen. ErrTooOld says that the store can no longer vouch for a proof
// issued that early (it had to forget a live proof issued no later); any other error that it
// could not answer. Either way the proof must not be accepted.
type ReplayStore interface {
	FirstUse(ctx context.Context, u Use) (bool, error)
}

// MemoryOptions bound a MemoryStore.
type MemoryOptions struct {
	// Max bounds the proofs remembered (default 100,000: about 16 MiB, 33 MiB when every proof
	// comes from a key of its own).
	Max int
	Now func() time.Time
}

// MemoryStore is a ReplayStore in this process's memory: proofs replayed on another replica
// go unnoticed (RedisStore shares them). It holds at most Max proofs, yet never refuses a new
// proof for want of room and never accepts a replay:
//
//   - Full of live proofs, it forgets the oldest proof (by iat) of a key — one holding proofs
//     older than Recent before its newest, the one that holds the most; failing any, of the
//     keys holding two or more, the one whose last proof arrived earliest — and raises that
//     key's watermark to the forgotten proof's iat. From then on a proof of that key issued at or before its
//     watermark is refused as too old (ErrTooOld), whether seen or not: the key's acceptance
//     window narrows instead of the store closing. A key that floods narrows its own window;
//     a client loses only proofs older than the ones it is making now.
//   - A key left with no proof hands its watermark on to the store's, which every proof must
//     pass. Through eviction that happens only once every key holds a single proof: as many
//     keys, each with an access token bound to it, as the store has room for.
//   - A proof is forgotten without a trace once it has expired.
//
// Watermarks only rise. Each call costs O(log n), flood or not.
type MemoryStore struct {
	mu       sync.Mutex // guards everything below
	entries  map[[32]byte]*entry
	owners   map[string]*owner
	byExpiry indexedHeap[entry] // every entry, soonest expiry first
	bySize   indexedHeap[owner] // the next key to evict from first
	bySeen   indexedHeap[owner] // the keys holding two proofs or more, whose last arrived earliest first
	floor    int64              // the store's watermark (Unix ns)
	max      int
	now      func() time.Time
	evicted  uint64
	tooOld   uint64
}

type entry struct {
	id       [32]byte
	iat, exp int64 // Unix ns
	owner    *owner
	inOwner  int // position in owner.entries
	inExpiry int // position in MemoryStore.byExpiry
}

type owner struct {
	key     string
	entries indexedHeap[entry] // oldest iat first; never empty while the owner is in the store
	floor   int64              // this key's watermark (Unix ns)
	newest  int64              // the iat of its newest proof (Unix ns)
	seen    int64              // when its last proof arrived (Unix ns, the store's clock)
	inSize  int                // position in MemoryStore.bySize
	inSeen  int                // position in MemoryStore.bySeen
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(o MemoryOptions) *MemoryStore {
	if o.Max <= 0 {
		o.Max = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &MemoryStore{
		entries:  map[[32]byte]*entry{},
		owners:   map[string]*owner{},
		byExpiry: indexedHeap[entry]{less: soonerExpiry, pos: inExpiry},
		bySize:   indexedHeap[owner]{less: evictFirst, pos: inSize},
		bySeen:   indexedHeap[owner]{less: lessRecentlySeen, pos: inSeen},
		floor:    math.MinInt64,
		max:      o.Max,
		now:      o.Now,
	}
}

func soonerExpiry(a, b *entry) bool { return a.exp < b.exp }
func olderIAT(a, b *entry) bool     { return a.iat < b.iat }
func inExpiry(e *entry) *int        { return &e.inExpiry }
func inOwner(e *entry) *int         { return &e.inOwner }
func inSize(o *owner) *int          { return &o.inSize }
func inSeen(o *owner) *int          { return &o.inSeen }

// evictFirst orders the keys whose proofs span Recent or more (their oldest at least Recent
// older than their newest) first: a watermark at such a key's oldest proof refuses only proofs
// that old, never those it is making now. Of those, the key with most proofs first (a flood
// pays first), then the oldest proof first. (Of the others, the same order; evict takes them
// by bySeen.)
func evictFirst(a, b *owner) bool {
	if sa, sb := a.spansRecent(), b.spansRecent(); sa != sb {
		return sa
	}
	if la, lb := a.entries.len(), b.entries.len(); la != lb {
		return la > lb
	}
	return a.entries.top().iat < b.entries.top().iat
}

// lessRecentlySeen orders keys by the time their last proof arrived, the earliest first.
func lessRecentlySeen(a, b *owner) bool { return a.seen < b.seen }

// spansRecent reports whether the key's oldest proof is at least Recent older than its newest.
func (o *owner) spansRecent() bool { return o.entries.top().iat <= o.newest-int64(Recent) }

// FirstUse implements ReplayStore. u.IssuedAt and u.Expires must lie within a few centuries
// of now (a verified proof's do).
func (m *MemoryStore) FirstUse(_ context.Context, u Use) (bool, error) {
	iat, exp := u.IssuedAt.UnixNano(), u.Expires.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	m.expire(now)
	if _, seen := m.entries[u.ID]; seen {
		return false, nil
	}
	if m.belowWatermark(u.Owner, iat) {
		m.tooOld++
		return false, ErrTooOld
	}
	if len(m.entries) >= m.max {
		// The eviction may raise a watermark past u: u is remembered all the same, and
		// refused by the watermark only once forgotten in turn.
		m.evict()
	}
	o := m.owners[u.Owner]
	if o == nil {
		o = &owner{key: u.Owner, floor: math.MinInt64, newest: math.MinInt64, entries: indexedHeap[entry]{less: olderIAT, pos: inOwner}}
		m.owners[u.Owner] = o
	}
	e := &entry{id: u.ID, iat: iat, exp: exp, owner: o}
	m.entries[u.ID] = e
	m.byExpiry.push(e)
	o.entries.push(e)
	o.newest, o.seen = max(o.newest, iat), now
	switch o.entries.len() {
	case 1:
		m.bySize.push(o)
	case 2:
		m.bySize.fix(o.inSize)
		m.bySeen.push(o)
	default:
		m.bySize.fix(o.inSize)
		m.bySeen.fix(o.inSeen)
	}
	return true, nil
}

// belowWatermark reports whether a proof of key issued at iat is at or below the store's
// watermark or the key's.
func (m *MemoryStore) belowWatermark(key string, iat int64) bool {
	if iat <= m.floor {
		return true
	}
	o := m.owners[key]
	return o != nil && iat <= o.floor
}

// expire forgets the proofs no verifier accepts any more.
func (m *MemoryStore) expire(now int64) {
	for e := m.byExpiry.top(); e != nil && e.exp <= now; e = m.byExpiry.top() {
		m.forget(e)
	}
}

// evict forgets the oldest proof of a key, and raises that key's watermark to it. The key is
// the one evictFirst puts first when its proofs span Recent; else — every key's proofs lie
// within Recent of its newest — the key holding two proofs or more whose last proof arrived
// earliest (by the server's clock: an iat dated ahead buys nothing), the least likely to be
// sending now: a burst of a moment ago before a busy client of this second, whichever holds
// more. Neither empties a key; only when every key holds one proof does the key evictFirst
// puts first lose its last, and hand its watermark on to the store's. It is called on a full
// store, after expire: the proof is live.
func (m *MemoryStore) evict() {
	o := m.bySize.top()
	if !o.spansRecent() && m.bySeen.len() > 0 {
		o = m.bySeen.top()
	}
	e := o.entries.top()
	o.floor = max(o.floor, e.iat)
	m.evicted++
	m.forget(e)
}

// forget removes e; a key left with no proof hands its watermark on to the store's.
func (m *MemoryStore) forget(e *entry) {
	o := e.owner
	delete(m.entries, e.id)
	m.byExpiry.remove(e)
	o.entries.remove(e)
	if o.entries.len() == 1 {
		m.bySeen.remove(o)
	}
	if o.entries.len() > 0 {
		m.bySize.fix(o.inSize)
		return
	}
	m.floor = max(m.floor, o.floor)
	m.bySize.remove(o)
	delete(m.owners, o.key)
}

// Recent is how far behind its newest proof a key's proofs count as those it is making now:
// eviction raises no key's watermark into that span while older proofs are there to go.
const Recent = 2 * time.Second

// MemoryStats describe a MemoryStore, for metrics.
type MemoryStats struct {
	// Entries and Keys count the proofs remembered and the keys they belong to.
	Entries, Keys int
	// Evicted counts the live proofs forgotten to make room; TooOld the proofs refused because
	// they were issued no later than a forgotten one.
	Evicted, TooOld uint64
}

// Stats returns the store's figures now.
func (m *MemoryStore) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return MemoryStats{Entries: len(m.entries), Keys: len(m.owners), Evicted: m.evicted, TooOld: m.tooOld}
}

// Fallback is a ReplayStore that asks Primary and, when Primary cannot answer, Local (which
// also records every proof Primary accepts) — or,
// without a Local, passes the error on, so the proof is not accepted. OnError hears every
// failure of Primary either way (for a log line and a metric): an outage is never silent, and
// never a silent accept.
type Fallback struct {
	Primary, Local ReplayStore
	OnError        func(error)
}

// FirstUse implements ReplayStore. Primary's ErrTooOld is an answer, not a failure.
func (f *Fallback) FirstUse(ctx context.Context, u Use) (bool, error) {
	first, err := f.Primary.FirstUse(ctx, u)
	if err == nil && first && f.Local != nil {
		// Local remembers what Primary accepted too: in an outage a proof this replica took
		// must not pass here again (only, unavoidably, once on each other replica).
		_, _ = f.Local.FirstUse(ctx, u)
	}
	if err == nil || errors.Is(err, ErrTooOld) {
		return first, err
	}
	if f.OnError != nil {
		f.OnError(err)
	}
	if f.Local == nil {
		return false, err
	}
	return f.Local.FirstUse(ctx, u)
}
