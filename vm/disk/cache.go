package disk

import "container/list"

// chunkCache keeps the most recently read base chunks, keyed by chunk
// number. A nil value is a hole. The Disk's mutex guards it.
type chunkCache struct {
	max   int
	order *list.List // front is the most recently used
	byKey map[int64]*list.Element
}

type cacheEntry struct {
	chunk int64
	data  []byte
}

func newChunkCache(max int) *chunkCache {
	return &chunkCache{max: max, order: list.New(), byKey: map[int64]*list.Element{}}
}

func (c *chunkCache) get(chunk int64) ([]byte, bool) {
	e, ok := c.byKey[chunk]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).data, true
}

func (c *chunkCache) add(chunk int64, data []byte) {
	if e, ok := c.byKey[chunk]; ok {
		e.Value.(*cacheEntry).data = data
		c.order.MoveToFront(e)
		return
	}
	c.byKey[chunk] = c.order.PushFront(&cacheEntry{chunk: chunk, data: data})
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*cacheEntry).chunk)
	}
}
