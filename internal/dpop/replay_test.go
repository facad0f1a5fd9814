package dpop

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func id(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// window is how long a proof is remembered with the default max age and a one-minute leeway.
const window = DefaultMaxAge + 2*time.Minute

// use is the proof jti of key issued at iat, as Remember hands it to a store.
func use(key, jti string, iat time.Time) Use {
	return Use{ID: id(key + "\x00" + jti), Owner: key, IssuedAt: iat, Expires: iat.Add(window)}
}

// clock is a settable time source.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestMemoryStoreRemembersUntilExpiry(t *testing.T) {
	c := &clock{t0}
	m := NewMemoryStore(MemoryOptions{Now: c.Now})
	ctx := context.Background()
	p := use("k", "a", t0)
	first, err := m.FirstUse(ctx, p)
	require.NoError(t, err)
	assert.True(t, first)
	c.now = t0.Add(window - time.Second)
	first, err = m.FirstUse(ctx, p)
	require.NoError(t, err)
	assert.False(t, first, "seen within its window")
	c.now = t0.Add(window)
	first, err = m.FirstUse(ctx, use("k", "b", c.now))
	require.NoError(t, err)
	assert.True(t, first)
	assert.Equal(t, MemoryStats{Entries: 1, Keys: 1}, m.Stats(), "the expired proof is forgotten, without an eviction")
	first, err = m.FirstUse(ctx, use("k", "c", t0.Add(time.Second)))
	require.NoError(t, err)
	assert.True(t, first, "expiry raises no watermark (the verifier refuses proofs that old by their iat)")
}

// TestMemoryStoreFloodNarrowsOnlyTheFloodersWindow: keys that send far more proofs than the
// store holds — dated as late as the leeway allows, so that theirs are the newest — never make
// it refuse another client's fresh proof, nor forget that client's proofs while it holds fewer
// than each flooder, and never get a replay accepted: their own forgotten proofs are refused as
// too old, seen or not.
func TestMemoryStoreFloodNarrowsOnlyTheFloodersWindow(t *testing.T) {
	const max = 1000
	tests := []struct {
		name   string
		keys   int
		dateAt time.Duration // a flood proof's iat, from now
		kept   bool          // whether the victim (21 proofs) keeps its oldest: it holds fewer than each flooder
	}{
		{"one key, future-dated", 1, time.Minute, true},
		{"ten keys, the issue's attack", 10, time.Minute, true},
		{"ten keys, dated now", 10, 0, true},
		{"a hundred keys: the victim holds more than each", 100, time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t0}
			m := NewMemoryStore(MemoryOptions{Max: max, Now: c.Now})
			ctx := context.Background()
			accept := func(u Use) {
				t.Helper()
				first, err := m.FirstUse(ctx, u)
				require.NoError(t, err)
				require.True(t, first)
			}
			victim := use("victim", "before", c.now)
			accept(victim)
			var flooded []Use
			for i := range 20 * max {
				// 200 s in all: nothing expires, and each key's proofs span more than Recent (a
				// store turned over faster is TestMemoryStoreClientAboveTheFloodersShare's case).
				c.now = c.now.Add(10 * time.Millisecond)
				u := use(fmt.Sprint("flooder-", i%tt.keys), fmt.Sprint(i), c.now.Add(tt.dateAt))
				accept(u)
				flooded = append(flooded, u)
				if i%max == 0 {
					accept(use("victim", fmt.Sprint("during-", i), c.now))
				}
			}
			accept(use("victim", "after", c.now))
			first, err := m.FirstUse(ctx, victim)
			assert.False(t, first, "the victim's first proof is never accepted again")
			if tt.kept {
				assert.NoError(t, err, "it is remembered")
			} else {
				assert.ErrorIs(t, err, ErrTooOld, "it was forgotten, below the victim's watermark")
			}

			first, err = m.FirstUse(ctx, flooded[0])
			assert.ErrorIs(t, err, ErrTooOld, "a flooder's forgotten proof is never accepted again")
			assert.False(t, first)
			_, err = m.FirstUse(ctx, use(flooded[0].Owner, "never-sent", flooded[0].IssuedAt))
			assert.ErrorIs(t, err, ErrTooOld, "nor one it never sent, as old")
			st := m.Stats()
			assert.Equal(t, max, st.Entries)
			assert.Greater(t, st.Evicted, uint64(0))
		})
	}
}

// TestMemoryStoreBusyClientKeepsWorking: a client that holds more proofs than any flooder loses
// its own oldest ones to the flood; its new proofs are still accepted, its forgotten ones never.
func TestMemoryStoreBusyClientKeepsWorking(t *testing.T) {
	c := &clock{t0}
	m := NewMemoryStore(MemoryOptions{Max: 1000, Now: c.Now})
	ctx := context.Background()
	for i := range 500 {
		c.now = c.now.Add(10 * time.Millisecond)
		first, err := m.FirstUse(ctx, use("busy", fmt.Sprint(i), c.now))
		require.NoError(t, err)
		require.True(t, first)
	}
	for i := range 5000 {
		c.now = c.now.Add(time.Millisecond)
		_, err := m.FirstUse(ctx, use(fmt.Sprint("flooder-", i%10), fmt.Sprint(i), c.now.Add(time.Minute)))
		require.NoError(t, err)
		if i%100 == 0 {
			first, err := m.FirstUse(ctx, use("busy", fmt.Sprint("during-", i), c.now))
			require.NoError(t, err, "the busy client's fresh proofs are accepted")
			require.True(t, first)
		}
	}
	_, err := m.FirstUse(ctx, use("busy", "0", t0.Add(10*time.Millisecond)))
	assert.ErrorIs(t, err, ErrTooOld, "its oldest proof was forgotten: refused, not accepted")
	first, err := m.FirstUse(ctx, use("busy", "during-4900", t0))
	require.NoError(t, err)
	assert.False(t, first, "its latest proofs are remembered")
}

// TestMemoryStoreAsManyKeysAsRoom: the limit of the design. With as many keys as the store has
// room for, each holding one proof, evictions raise the store's watermark, which every key's
// proofs must pass: the window narrows for everyone — but no replay is ever accepted and the
// memory stays bounded. (Each key needs an access token bound to it.)
func TestMemoryStoreAsManyKeysAsRoom(t *testing.T) {
	const max = 1000
	c := &clock{t0}
	m := NewMemoryStore(MemoryOptions{Max: max, Now: c.Now})
	ctx := context.Background()
	victim := use("victim", "1", t0)
	first, err := m.FirstUse(ctx, victim)
	require.NoError(t, err)
	require.True(t, first)
	for i := range max {
		c.now = c.now.Add(time.Millisecond)
		first, err := m.FirstUse(ctx, use(fmt.Sprint("key-", i), "1", c.now.Add(time.Minute)))
		require.NoError(t, err)
		require.True(t, first)
	}
	_, err = m.FirstUse(ctx, victim)
	assert.ErrorIs(t, err, ErrTooOld, "the oldest key's proof was forgotten: its replay is refused")
	first, err = m.FirstUse(ctx, use("victim", "2", c.now))
	require.NoError(t, err)
	assert.True(t, first, "a proof newer than every forgotten one passes")
	for i := range max {
		c.now = c.now.Add(time.Millisecond)
		_, err := m.FirstUse(ctx, use(fmt.Sprint("more-", i), "1", c.now.Add(time.Minute)))
		require.NoError(t, err)
	}
	_, err = m.FirstUse(ctx, use("victim", "3", c.now))
	assert.ErrorIs(t, err, ErrTooOld, "now the watermark is past the victim's fresh proofs (for at most the leeway)")
	assert.Equal(t, max, m.Stats().Entries)
}

// TestMemoryStoreKeepsTheProofItMadeRoomFor: a proof older than every other of its key,
// arriving when the store is full, is remembered although the eviction it causes raises its
// key's watermark past it; the proof forgotten for it is refused.
func TestMemoryStoreKeepsTheProofItMadeRoomFor(t *testing.T) {
	m := NewMemoryStore(MemoryOptions{Max: 3, Now: func() time.Time { return t0 }})
	ctx := context.Background()
	for i := range 3 {
		first, err := m.FirstUse(ctx, use("k", fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second)))
		require.NoError(t, err)
		require.True(t, first)
	}
	older := use("k", "older", t0.Add(-time.Second))
	first, err := m.FirstUse(ctx, older)
	require.NoError(t, err)
	assert.True(t, first)
	first, err = m.FirstUse(ctx, older)
	require.NoError(t, err)
	assert.False(t, first, "remembered")
	_, err = m.FirstUse(ctx, use("k", "0", t0))
	assert.ErrorIs(t, err, ErrTooOld, "the proof forgotten to make room")
	_, err = m.FirstUse(ctx, use("k", "other", t0.Add(-2*time.Second)))
	assert.ErrorIs(t, err, ErrTooOld, "and any other as old")
}

// FuzzMemoryStore drives a small store with a random sequence of proofs (a few keys and jtis,
// iats around now, time moving on) and checks it against a model that forgets nothing: no
// proof is ever accepted twice within its window, the store never holds more than its
// maximum, watermarks only rise, and its indexes stay consistent.
func FuzzMemoryStore(f *testing.F) {
	f.Add([]byte{0, 0, 128, 0, 1, 0, 128, 0, 0, 0, 128, 0})
	f.Add([]byte("a flood of proofs from one key and then another, and a replay of the first"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		c := &clock{t0}
		m := NewMemoryStore(MemoryOptions{Max: 8, Now: c.Now})
		accepted := map[[32]byte]Use{} // every proof accepted, never forgotten
		floor := int64(math.MinInt64)
		for len(ops) >= 4 {
			key, jti, iatAt, step := ops[0]%4, ops[1]%16, time.Duration(int8(ops[2]))*time.Second, time.Duration(ops[3])*time.Second
			ops = ops[4:]
			c.now = c.now.Add(step)
			u := use(fmt.Sprint(key), fmt.Sprint(jti), c.now.Add(iatAt))
			first, err := m.FirstUse(context.Background(), u)
			if err != nil && !errors.Is(err, ErrTooOld) {
				t.Fatalf("FirstUse: %v", err)
			}
			if prev, ok := accepted[u.ID]; ok && first && prev.IssuedAt.Equal(u.IssuedAt) && c.now.Before(prev.Expires) {
				t.Fatalf("a replay within its window was accepted: %+v", u)
			}
			if first {
				accepted[u.ID] = u
			}
			if m.floor < floor {
				t.Fatalf("the store's watermark went down")
			}
			floor = m.floor
			checkMemoryStore(t, m)
		}
	})
}

// checkMemoryStore checks the store's invariants: at most max entries, the map and the heaps
// hold the same entries at the positions they record, every heap is ordered, no key is empty.
func checkMemoryStore(t *testing.T, m *MemoryStore) {
	t.Helper()
	if len(m.entries) > m.max || m.byExpiry.len() != len(m.entries) || m.bySize.len() != len(m.owners) {
		t.Fatalf("sizes: %d entries of %d, %d by expiry, %d keys, %d by size", len(m.entries), m.max, m.byExpiry.len(), len(m.owners), m.bySize.len())
	}
	checkHeap(t, &m.byExpiry)
	checkHeap(t, &m.bySize)
	checkHeap(t, &m.bySeen)
	n, seen := 0, 0
	for key, o := range m.owners {
		if o.key != key || o.entries.len() == 0 {
			t.Fatalf("key %q: %d entries", key, o.entries.len())
		}
		checkHeap(t, &o.entries)
		for _, e := range o.entries.items {
			if m.entries[e.id] != e || e.owner != o || m.byExpiry.items[e.inExpiry] != e {
				t.Fatalf("entry of key %q is not indexed where it says", key)
			}
		}
		if inSeen := o.entries.len() > 1; inSeen != (o.inSeen >= 0 && o.inSeen < m.bySeen.len() && m.bySeen.items[o.inSeen] == o) {
			t.Fatalf("key %q with %d entries: in bySeen %v", key, o.entries.len(), !inSeen)
		}
		if o.entries.len() > 1 {
			seen++
		}
		n += o.entries.len()
	}
	if seen != m.bySeen.len() {
		t.Fatalf("%d keys with two proofs or more, %d by seen", seen, m.bySeen.len())
	}
	if n != len(m.entries) {
		t.Fatalf("%d entries by key, %d in all", n, len(m.entries))
	}
}

func checkHeap[T any](t *testing.T, h *indexedHeap[T]) {
	t.Helper()
	for i, x := range h.items {
		if *h.pos(x) != i {
			t.Fatalf("heap item %d records position %d", i, *h.pos(x))
		}
		if i > 0 && h.less(x, h.items[(i-1)/2]) {
			t.Fatalf("heap item %d is less than its parent", i)
		}
	}
}

// TestRememberRefusesProofsTheStoreForgot: through the verifier, a proof whose key's older
// proofs had to be forgotten is refused as too old (401 invalid_dpop_proof), not as an outage.
func TestRememberRefusesProofsTheStoreForgot(t *testing.T) {
	store := NewMemoryStore(MemoryOptions{Max: 2, Now: func() time.Time { return t0 }})
	v, err := New(Options{Leeway: 30 * time.Second, Now: func() time.Time { return t0 }, Replay: store})
	require.NoError(t, err)
	req := Request{Method: "GET", URI: uri, AccessToken: token}
	var proofs []string
	for i := range 3 {
		proofs = append(proofs, proof(t, ecKey, jwa.ES256(), nil, map[string]any{"jti": fmt.Sprint(i), "iat": t0.Add(time.Duration(i-3) * time.Second).Unix()}))
		p, err := v.Verify([]string{proofs[i]}, req)
		require.NoError(t, err)
		require.NoError(t, v.Remember(context.Background(), p))
	}
	other, err := New(Options{Leeway: 30 * time.Second, Now: func() time.Time { return t0 }, Replay: store})
	require.NoError(t, err)
	p, err := other.Verify([]string{proofs[0]}, req)
	require.NoError(t, err)
	assert.Equal(t, ErrTooOld, other.Remember(context.Background(), p))
}

type answer struct {
	first bool
	err   error
}

// fixedStore answers every call with the same answer and counts the calls.
type fixedStore struct {
	answer
	calls int
}

func (s *fixedStore) FirstUse(context.Context, Use) (bool, error) { s.calls++; return s.first, s.err }

func TestFallback(t *testing.T) {
	down := errors.New("connection refused")
	tests := []struct {
		name      string
		primary   answer
		local     bool
		want      answer
		localUsed bool
		reported  bool
	}{
		{"first use, recorded locally too", answer{true, nil}, true, answer{true, nil}, true, false},
		{"replay", answer{false, nil}, true, answer{false, nil}, false, false},
		{"too old is an answer", answer{false, ErrTooOld}, true, answer{false, ErrTooOld}, false, false},
		{"down, deny", answer{false, down}, false, answer{false, down}, false, true},
		{"down, local", answer{false, down}, true, answer{true, nil}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := &fixedStore{answer: answer{true, nil}}
			reported := false
			f := &Fallback{Primary: &fixedStore{answer: tt.primary}, OnError: func(error) { reported = true }}
			if tt.local {
				f.Local = local
			}
			first, err := f.FirstUse(context.Background(), use("k", "1", t0))
			assert.Equal(t, tt.want, answer{first, err})
			assert.Equal(t, tt.localUsed, local.calls > 0)
			assert.Equal(t, tt.reported, reported)
		})
	}
}

// BenchmarkMemoryStoreFlood is the cost of a call on a full store, where every call evicts:
// one key flooding, ten keys, and every proof from a key of its own.
func BenchmarkMemoryStoreFlood(b *testing.B) {
	const max = 100_000
	for _, bc := range []struct {
		name string
		keys int // 0: a key per proof
	}{{"one key", 1}, {"ten keys", 10}, {"a key per proof", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			c := &clock{t0}
			m := NewMemoryStore(MemoryOptions{Max: max, Now: c.Now})
			ctx := context.Background()
			var jti [32]byte
			next := func(i int) Use {
				binary.LittleEndian.PutUint64(jti[:], uint64(i))
				c.now = c.now.Add(time.Microsecond)
				owner := i
				if bc.keys > 0 {
					owner = i % bc.keys
				}
				return Use{ID: sha256.Sum256(jti[:]), Owner: fmt.Sprintf("%043d", owner), IssuedAt: c.now, Expires: c.now.Add(window)}
			}
			for i := range max {
				if _, err := m.FirstUse(ctx, next(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := max
			for b.Loop() {
				if _, err := m.FirstUse(ctx, next(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkMemoryStoreSize reports the heap a full store holds per proof: one key per proof
// (the worst case: a key record each) and ten keys.
func BenchmarkMemoryStoreSize(b *testing.B) {
	const max = 100_000
	for _, bc := range []struct {
		name string
		keys int // 0: a key per proof
	}{{"ten keys", 10}, {"a key per proof", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				m := NewMemoryStore(MemoryOptions{Max: max, Now: func() time.Time { return t0 }})
				var jti [8]byte
				for i := range max {
					binary.LittleEndian.PutUint64(jti[:], uint64(i))
					owner := i
					if bc.keys > 0 {
						owner = i % bc.keys
					}
					if _, err := m.FirstUse(context.Background(), Use{ID: sha256.Sum256(jti[:]), Owner: fmt.Sprintf("%043d", owner), IssuedAt: t0, Expires: t0.Add(window)}); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/max, "B/proof")
				runtime.KeepAlive(m)
			}
		})
	}
}

// TestMemoryStoreClientAboveTheFloodersShare: a client sending more proofs per key than each of
// a thousand flooder keys holds — each with whole-second iats, as clients send them — loses
// none of the proofs it is making now: the store forgets older ones (the flooders', then its
// own from seconds ago), and still accepts no replay.
func TestMemoryStoreClientAboveTheFloodersShare(t *testing.T) {
	c := &clock{t0}
	m := NewMemoryStore(MemoryOptions{Max: 100_000, Now: c.Now})
	ctx := context.Background()
	for k := range 1000 {
		for j := range 100 {
			_, err := m.FirstUse(ctx, use(fmt.Sprint("flood-", k), fmt.Sprint(j), t0))
			require.NoError(t, err)
		}
	}
	for sec := 1; sec <= 10; sec++ {
		c.now = t0.Add(time.Duration(sec) * time.Second)
		for i := range 200 {
			first, err := m.FirstUse(ctx, use("honest", fmt.Sprint(sec, "-", i), c.now))
			require.NoError(t, err, "second %d, proof %d", sec, i)
			require.True(t, first)
		}
	}
	for _, u := range []Use{use("honest", "10-0", c.now), use("honest", "1-0", t0.Add(time.Second)), use("flood-0", "0", t0)} {
		first, _ := m.FirstUse(ctx, u)
		assert.False(t, first, "a replay is refused (remembered, or too old): %s", u.Owner)
	}
	assert.LessOrEqual(t, m.Stats().Entries, 100_000)
}

// flakyStore accepts every proof once, then fails: Redis going down after the first use.
type flakyStore struct{ calls int }

func (s *flakyStore) FirstUse(context.Context, Use) (bool, error) {
	if s.calls++; s.calls == 1 {
		return true, nil
	}
	return false, errors.New("connection refused")
}

// TestFallbackNeverReplaysOnTheSameReplica: a proof the shared store accepted is refused by
// the local fallback when the shared store goes down (the docs: once per *other* replica).
func TestFallbackNeverReplaysOnTheSameReplica(t *testing.T) {
	f := &Fallback{Primary: &flakyStore{}, Local: NewMemoryStore(MemoryOptions{Now: func() time.Time { return t0 }})}
	u := use("k", "1", t0)
	first, err := f.FirstUse(context.Background(), u)
	require.NoError(t, err)
	require.True(t, first)
	first, err = f.FirstUse(context.Background(), u)
	require.NoError(t, err)
	assert.False(t, first, "replayed during the outage, on the replica that took it")
}
