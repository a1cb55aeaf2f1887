package objects

import "sync"

// defaultNodeCacheBytes bounds the decoded index nodes a Store keeps: about
// 16 thousand leaves, enough for the indexes of 512 GiB of chunks.
const defaultNodeCacheBytes = 256 << 20

// nodeCache keeps decoded index nodes by ID. Nodes are immutable, so a hit
// needs no verification. When the cache is full it drops arbitrary entries.
type nodeCache struct {
	mu       sync.RWMutex
	nodes    map[ID]*IndexNode
	bytes    int
	maxBytes int
}

func newNodeCache(maxBytes int) *nodeCache {
	return &nodeCache{nodes: make(map[ID]*IndexNode), maxBytes: maxBytes}
}

func nodeBytes(n *IndexNode) int { return 64 + len(n.Children)*IDSize }

func (c *nodeCache) get(id ID) *IndexNode {
	c.mu.RLock()
	n := c.nodes[id]
	c.mu.RUnlock()
	return n
}

func (c *nodeCache) add(id ID, n *IndexNode) {
	size := nodeBytes(n)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.nodes[id]; ok {
		return
	}
	for c.bytes+size > c.maxBytes && len(c.nodes) > 0 {
		for k, v := range c.nodes {
			delete(c.nodes, k)
			c.bytes -= nodeBytes(v)
			break
		}
	}
	c.nodes[id] = n
	c.bytes += size
}
