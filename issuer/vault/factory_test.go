package vault

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestCache(t *testing.T) {
	c := NewCache(nil, nil)
	var builds atomic.Int32
	build := func(context.Context) (Config, error) {
		builds.Add(1)
		return Config{Address: "http://127.0.0.1:1", Auth: TokenAuth(func(context.Context) (string, error) { return "t", nil })}, nil
	}
	ctx := context.Background()
	k1 := CacheKey{UID: "u", Generation: 1, Settings: SettingsDigest("a")}

	var wg sync.WaitGroup
	clients := make([]*Client, 10)
	for i := range clients {
		wg.Go(func() {
			cl, err := c.Get(ctx, k1, build)
			if err != nil {
				t.Error(err)
			}
			clients[i] = cl
		})
	}
	wg.Wait()
	if builds.Load() != 1 {
		t.Fatalf("built %d clients for one key, want 1", builds.Load())
	}
	for _, cl := range clients {
		if cl != clients[0] {
			t.Fatal("concurrent Gets of one key returned different clients")
		}
	}

	k2 := CacheKey{UID: "u", Generation: 2, Settings: k1.Settings}
	cl2, err := c.Get(ctx, k2, build)
	if err != nil || cl2 == clients[0] || c.Len() != 1 {
		t.Fatalf("new generation: err %v, same client %v, len %d; want a new client replacing the old", err, cl2 == clients[0], c.Len())
	}
	if _, err := c.Get(ctx, k1, build); err == nil {
		t.Fatal("an older generation must not evict the newer client")
	}
	k3 := CacheKey{UID: "u", Generation: 2, Settings: SettingsDigest("b")}
	if cl3, _ := c.Get(ctx, k3, build); cl3 == cl2 {
		t.Fatal("changed auth settings reused the old client")
	}
	c.Forget("u")
	if c.Len() != 0 {
		t.Fatalf("Forget left %d clients", c.Len())
	}
}

func TestSettingsDigest(t *testing.T) {
	if SettingsDigest("ab", "c") == SettingsDigest("a", "bc") {
		t.Fatal("digest is ambiguous across part boundaries")
	}
}

func TestRetainDropsTheClientsOfIssuersThatAreGone(t *testing.T) {
	c := NewCache(nil, nil)
	build := func(context.Context) (Config, error) {
		return Config{Address: "http://127.0.0.1:1", Auth: TokenAuth(func(context.Context) (string, error) { return "t", nil })}, nil
	}
	for _, uid := range []types.UID{"kept", "gone"} {
		if _, err := c.Get(context.Background(), CacheKey{UID: uid, Generation: 1}, build); err != nil {
			t.Fatal(err)
		}
	}
	c.Retain(func(uid types.UID) bool { return uid == "kept" })
	if c.Len() != 1 {
		t.Fatalf("%d clients after Retain, want 1", c.Len())
	}
	calls := 0
	counting := func(ctx context.Context) (Config, error) { calls++; return build(ctx) }
	if _, err := c.Get(context.Background(), CacheKey{UID: "kept", Generation: 1}, counting); err != nil || calls != 0 {
		t.Fatalf("kept issuer: err %v, rebuilt %d times; want its client reused", err, calls)
	}
	if _, err := c.Get(context.Background(), CacheKey{UID: "gone", Generation: 1}, counting); err != nil || calls != 1 {
		t.Fatalf("dropped issuer: err %v, built %d times; want a new client", err, calls)
	}
}
