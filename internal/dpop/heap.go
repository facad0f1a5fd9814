package dpop

// indexedHeap is a binary min-heap of *T under less that keeps each element's position in it
// (pos), so that any element can be removed or re-placed in O(log n): the memory store keeps
// one entry in two heaps (its key's, by iat; the store's, by expiry) and removes it from both.
type indexedHeap[T any] struct {
	items []*T
	less  func(a, b *T) bool
	pos   func(*T) *int
}

func (h *indexedHeap[T]) len() int { return len(h.items) }

// top is the least element, or nil.
func (h *indexedHeap[T]) top() *T {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func (h *indexedHeap[T]) push(x *T) {
	*h.pos(x) = len(h.items)
	h.items = append(h.items, x)
	h.up(len(h.items) - 1)
}

// remove takes x, which must be in the heap, out of it.
func (h *indexedHeap[T]) remove(x *T) {
	i, last := *h.pos(x), len(h.items)-1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil // let the collector have it
	h.items = h.items[:last]
	if i < last {
		h.fix(i)
	}
	*h.pos(x) = -1
}

// fix re-places the element at i after its order changed.
func (h *indexedHeap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *indexedHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.pos(h.items[i]), *h.pos(h.items[j]) = i, j
}

func (h *indexedHeap[T]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(h.items[i], h.items[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sinks the element at i and reports whether it moved.
func (h *indexedHeap[T]) down(i int) bool {
	start := i
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h.items) && h.less(h.items[l], h.items[least]) {
			least = l
		}
		if r < len(h.items) && h.less(h.items[r], h.items[least]) {
			least = r
		}
		if least == i {
			return i != start
		}
		h.swap(i, least)
		i = least
	}
}
