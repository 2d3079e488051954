package vault

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"
)

// rounds holds every Sign until n are in flight, then answers them all at
// once: the load of n request workers signing together, deterministically.
type rounds struct {
	n       int
	mu      sync.Mutex
	waiting int
	release chan struct{}
}

func (r *rounds) wait() bool {
	r.mu.Lock()
	ch := r.release
	if r.waiting++; r.waiting == r.n {
		close(ch)
		r.release, r.waiting = make(chan struct{}), 0
	}
	r.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// connectionsFor runs rounds of callers Signs at once, all in flight
// together and the next round only after the last has ended, as request
// workers do between their other work, through a client that keeps idle
// idle connections. It returns how many connections the server accepted.
func connectionsFor(t *testing.T, idle, callers, roundCount int) int32 {
	t.Helper()
	r := &rounds{n: callers, release: make(chan struct{})}
	fv := &fakeVault{t: t, login: func(int32) (int, any) { return loginOK("t1", 3600) }, sign: func(string) (int, any) {
		if !r.wait() {
			return vaultErr(http.StatusInternalServerError, "round never filled")
		}
		return signOK()
	}}
	srv := httptest.NewUnstartedServer(fv)
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	auth := AppRoleAuth("approle", "role-id", func(context.Context) (string, error) { return "secret-id", nil })
	c, err := NewClient(Config{Address: srv.URL, Auth: auth, IdleConnections: idle}, m, clocktesting.NewFakeClock(time.Unix(1_900_000_000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	for range roundCount {
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if _, err := c.Sign(context.Background(), leafReq); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	return conns.Load()
}

// TestIdleConnectionsCoverTheWorkers shows that a client keeping as many
// idle connections as there are concurrent callers reuses them, where
// Go's small default makes every round of calls open new ones: with TLS, a
// handshake Vault pays for each.
func TestIdleConnectionsCoverTheWorkers(t *testing.T) {
	const callers, roundCount = 8, 10
	// A few more than callers: the transport may dial while a connection
	// is on its way back to the pool.
	const bound = 2 * callers
	n := connectionsFor(t, callers, callers, roundCount)
	t.Logf("%d idle connections: %d connections for %d calls", callers, n, callers*roundCount)
	if n > bound {
		t.Errorf("with %d idle connections for %d callers: %d connections for %d calls, want at most %d", callers, callers, n, callers*roundCount, bound)
	}
	// The control: two idle connections, so six of every eight close after
	// each round.
	n = connectionsFor(t, 2, callers, roundCount)
	t.Logf("2 idle connections: %d connections", n)
	if n <= bound {
		t.Errorf("with 2 idle connections for %d callers: %d connections, want more than %d (else this test proves nothing)", callers, n, bound)
	}
}
