package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// ClientFactory hands controllers a ready Client. Controllers never build
// raw Vault clients themselves.
type ClientFactory interface {
	// Get returns the cached Client for key, or builds one from the Config
	// that build returns. build runs only on a cache miss.
	Get(ctx context.Context, key CacheKey, build func(context.Context) (Config, error)) (*Client, error)
	// Forget drops the issuer's client; the next Get builds a new one.
	Forget(uid types.UID)
	// Retain drops the clients of the issuers keep rejects.
	Retain(keep func(types.UID) bool)
}

// CacheKey identifies a Client: one per issuer object and version of its
// settings. A change of spec (generation) or of the auth settings yields a
// new key, hence a new login; nothing else does.
type CacheKey struct {
	// UID is the issuer object's UID.
	UID types.UID
	// Generation is the issuer object's metadata.generation.
	Generation int64
	// Settings is a digest of everything else the client depends on, such
	// as the auth settings and the namespace its Secrets are read from.
	Settings string
}

// SettingsDigest hashes the string forms of parts into a CacheKey.Settings
// value. Parts must not hold secret values.
func SettingsDigest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Cache is the ClientFactory: a per-key locked map of Clients. It keeps only
// the newest key of each UID, so an edited issuer drops its old client.
type Cache struct {
	metrics *Metrics
	clock   clock.PassiveClock

	mu      sync.Mutex
	entries map[CacheKey]*cacheEntry
	latest  map[types.UID]CacheKey
}

type cacheEntry struct {
	// mu is the per-key lock: one build at a time per key, while other keys
	// proceed.
	mu     sync.Mutex
	client *Client
}

var _ ClientFactory = &Cache{}

// NewCache builds an empty Cache whose Clients record into m.
func NewCache(m *Metrics, clk clock.PassiveClock) *Cache {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Cache{metrics: m, clock: clk, entries: map[CacheKey]*cacheEntry{}, latest: map[types.UID]CacheKey{}}
}

// Get implements ClientFactory.
func (c *Cache) Get(ctx context.Context, key CacheKey, build func(context.Context) (Config, error)) (*Client, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if !ok {
		if old, had := c.latest[key.UID]; had && old != key {
			// Only a newer generation evicts: a slow reconcile holding an
			// older object must not evict the client of the current one.
			if old.Generation > key.Generation {
				c.mu.Unlock()
				return nil, fmt.Errorf("issuer %s changed (generation %d is newer than %d); retrying with the new version", key.UID, old.Generation, key.Generation)
			}
			delete(c.entries, old)
		}
		e = &cacheEntry{}
		c.entries[key] = e
		c.latest[key.UID] = key
	}
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		return e.client, nil
	}
	cfg, err := build(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := NewClient(cfg, c.metrics, c.clock)
	if err != nil {
		return nil, err
	}
	e.client = cl
	return cl, nil
}

// Forget drops the client of an issuer, e.g. once it is deleted.
func (c *Cache) Forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if key, ok := c.latest[uid]; ok {
		delete(c.entries, key)
		delete(c.latest, uid)
	}
}

// Retain drops the clients of every issuer keep rejects, e.g. those that no
// longer exist: their tokens and connections would otherwise live as long
// as the process.
func (c *Cache) Retain(keep func(types.UID) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid, key := range c.latest {
		if !keep(uid) {
			delete(c.entries, key)
			delete(c.latest, uid)
		}
	}
}

// Len is the number of cached clients.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
