package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// fakeVault injects faults a real Vault cannot be made to produce on cue.
// Only the paths a test needs are served.
type fakeVault struct {
	t      *testing.T
	logins atomic.Int32
	mu     sync.Mutex
	// login answers a login; sign answers a sign given the token used.
	login func(n int32) (int, any)
	sign  func(token string) (int, any)
	// renew answers auth/token/renew-self; nil is a 404.
	renew func() (int, any)
	// sealed makes sys/health report a sealed Vault.
	sealed bool
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	write := func(code int, body any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/login"):
		n := f.logins.Add(1)
		write(f.login(n))
	case r.URL.Path == "/v1/auth/token/renew-self" && f.renew != nil:
		write(f.renew())
	case r.URL.Path == "/v1/sys/health":
		write(299, map[string]any{"initialized": true, "sealed": f.sealed})
	case strings.Contains(r.URL.Path, "/sign"):
		write(f.sign(r.Header.Get("X-Vault-Token")))
	default:
		write(http.StatusNotFound, map[string]any{"errors": []string{}})
	}
}

func loginOK(token string, ttl int) (int, any) {
	return http.StatusOK, map[string]any{"auth": map[string]any{"client_token": token, "lease_duration": ttl, "renewable": true}}
}

func vaultErr(code int, msg string) (int, any) {
	return code, map[string]any{"errors": []string{msg}}
}

// signOK returns a response the client decodes; the certificate content is
// irrelevant to the token logic under test.
func signOK() (int, any) {
	return http.StatusOK, map[string]any{"data": map[string]any{"certificate": testCertPEM, "ca_chain": []string{testCertPEM}}}
}

func newTestClient(t *testing.T, fv *fakeVault) (*Client, *Metrics) {
	t.Helper()
	auth := AppRoleAuth("approle", "role-id", func(context.Context) (string, error) { return "secret-id", nil })
	return newClientWith(t, fv, auth, clocktesting.NewFakeClock(time.Unix(1_900_000_000, 0)))
}

// newClientWith builds a client of fv that logs in with auth.
func newClientWith(t *testing.T, fv *fakeVault, auth Auth, clk *clocktesting.FakeClock) (*Client, *Metrics) {
	t.Helper()
	srv := httptest.NewServer(fv)
	t.Cleanup(srv.Close)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(Config{Address: srv.URL, Auth: auth}, m, clk)
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

var leafReq = vaultcontract.SignRequest{Mount: "pki", Role: "r", CSR: []byte("csr"), CommonName: "x"}

func TestReloginOnceOn403(t *testing.T) {
	tests := []struct {
		name       string
		sign       func(token string) (int, any)
		wantErr    string
		wantLogins int32
	}{
		{
			name: "403 then success with the new token",
			sign: func(token string) (int, any) {
				if token == "token-1" {
					return vaultErr(http.StatusForbidden, "permission denied")
				}
				return signOK()
			},
			wantLogins: 2,
		},
		{
			name: "403 twice fails with Vault's own text",
			sign: func(string) (int, any) {
				return vaultErr(http.StatusForbidden, "1 error occurred:\n\t* permission denied\n\n")
			},
			wantErr:    "HTTP 403: 1 error occurred:\n\t* permission denied",
			wantLogins: 2,
		},
		{
			name: "a non-403 error does not log in again",
			sign: func(string) (int, any) {
				return vaultErr(http.StatusBadRequest, "common name x not allowed by this role")
			},
			wantErr:    "common name x not allowed by this role",
			wantLogins: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fv := &fakeVault{t: t, sign: tc.sign}
			fv.login = func(n int32) (int, any) { return loginOK("token-"+string(rune('0'+n)), 3600) }
			c, m := newTestClient(t, fv)
			_, err := c.Sign(context.Background(), leafReq)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Sign error = %v, want it to contain %q", err, tc.wantErr)
			}
			if got := fv.logins.Load(); got != tc.wantLogins {
				t.Errorf("logins = %d, want %d", got, tc.wantLogins)
			}
			if got := testutil.ToFloat64(m.Logins.WithLabelValues(MethodAppRole)); got != float64(tc.wantLogins) {
				t.Errorf("logins metric = %v, want %d", got, tc.wantLogins)
			}
		})
	}
}

func TestConcurrent403sShareOneRelogin(t *testing.T) {
	fv := &fakeVault{t: t}
	fv.login = func(n int32) (int, any) { return loginOK("token-"+string(rune('0'+n)), 3600) }
	fv.sign = func(token string) (int, any) {
		if token == "token-1" {
			return vaultErr(http.StatusForbidden, "permission denied")
		}
		return signOK()
	}
	c, _ := newTestClient(t, fv)
	signConcurrently(t, c, 20, func() {})
	if got := fv.logins.Load(); got != 2 {
		t.Fatalf("logins = %d, want 2 (one, then one shared re-login)", got)
	}
}

func TestSealedVault(t *testing.T) {
	fv := &fakeVault{t: t, sealed: true}
	fv.login = func(int32) (int, any) { return vaultErr(http.StatusServiceUnavailable, "Vault is sealed") }
	fv.sign = func(string) (int, any) { return vaultErr(http.StatusServiceUnavailable, "Vault is sealed") }
	c, m := newTestClient(t, fv)
	err := c.Check(context.Background(), "pki", "")
	if err == nil || !strings.Contains(err.Error(), "Vault is sealed") || !IsUnavailable(err) {
		t.Fatalf("Check error = %v, want an unavailable 'Vault is sealed'", err)
	}
	_, err = c.Sign(context.Background(), leafReq)
	if !IsUnavailable(err) || !strings.Contains(err.Error(), "Vault is sealed") {
		t.Fatalf("Sign error = %v, want an unavailable 'Vault is sealed'", err)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("login", "503")); got != 1 {
		t.Errorf(`requests{op="login",code="503"} = %v, want 1`, got)
	}
}

func TestUnreachableVault(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	auth := TokenAuth(func(context.Context) (string, error) { return "t", nil })
	c, err := NewClient(Config{Address: addr, Auth: auth, Timeout: 5 * time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(context.Background(), "pki", "")
	if !IsUnavailable(err) {
		t.Fatalf("Check error = %v, want unavailable", err)
	}
}

// A 403 whose fresh login fails is a login failure: callers (the issuer's
// classify) see Op "login" and wait on the issuer rather than retrying the
// request with ever more logins.
func TestFailedReloginAfter403IsALoginError(t *testing.T) {
	fv := &fakeVault{t: t, sign: func(string) (int, any) { return vaultErr(http.StatusForbidden, "permission denied") }}
	fv.login = func(n int32) (int, any) {
		if n == 1 {
			return loginOK("token-1", 3600)
		}
		return vaultErr(http.StatusBadRequest, "invalid role or secret ID")
	}
	c, _ := newTestClient(t, fv)
	_, err := c.Sign(context.Background(), leafReq)
	var ve *Error
	if !errors.As(err, &ve) || ve.Op != "login" {
		t.Fatalf("Sign error %v: want a login *Error first", err)
	}
	if !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "invalid role or secret ID") {
		t.Errorf("Sign error %q should carry both the 403 and the login failure", err)
	}
}

// signConcurrently runs n Signs at once; meanwhile, once all have started,
// it runs during. Every Sign must succeed.
func signConcurrently(t *testing.T, c *Client, n int, during func()) {
	t.Helper()
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Go(func() {
			started.Done()
			_, err := c.Sign(context.Background(), leafReq)
			errs <- err
		})
	}
	started.Wait()
	during()
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// slowAPIServer stands in for the Kubernetes API server behind a
// Kubernetes-auth login: each TokenRequest waits until the test releases
// it, a slowness a real API server cannot be made to show on cue.
type slowAPIServer struct {
	srv      *httptest.Server
	requests atomic.Int32
	hold     atomic.Bool
	release  chan struct{}
}

func newSlowAPIServer(t *testing.T) *slowAPIServer {
	a := &slowAPIServer{release: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		if a.hold.Load() {
			select {
			case <-a.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": map[string]any{"token": "sa-jwt"}})
	}))
	t.Cleanup(a.srv.Close)
	t.Cleanup(func() {
		if a.hold.Swap(false) {
			close(a.release)
		}
	})
	return a
}

// jwt requests a service-account token the way the issuer's TokenRequest does.
func (a *slowAPIServer) jwt(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.srv.URL+"/api/v1/namespaces/ns/serviceaccounts/sa/token", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tr struct{ Status struct{ Token string } }
	return tr.Status.Token, json.NewDecoder(resp.Body).Decode(&tr)
}

func (a *slowAPIServer) unblock() {
	if a.hold.Swap(false) {
		close(a.release)
	}
}

func newKubernetesClient(t *testing.T, fv *fakeVault, api *slowAPIServer, clk *clocktesting.FakeClock) (*Client, *Metrics) {
	t.Helper()
	return newClientWith(t, fv, KubernetesAuth("kubernetes", "role", api.jwt), clk)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// N callers that all need a token share one login, however slow the API
// server behind it is.
func TestConcurrentCallersShareOneSlowLogin(t *testing.T) {
	api := newSlowAPIServer(t)
	api.hold.Store(true)
	fv := &fakeVault{t: t, sign: func(string) (int, any) { return signOK() }}
	fv.login = func(n int32) (int, any) { return loginOK(fmt.Sprintf("token-%d", n), 3600) }
	c, m := newKubernetesClient(t, fv, api, clocktesting.NewFakeClock(time.Unix(1_900_000_000, 0)))
	const n = 20
	signConcurrently(t, c, n, func() {
		waitFor(t, "the login's TokenRequest", func() bool { return api.requests.Load() == 1 })
		api.unblock()
	})
	if got := fv.logins.Load(); got != 1 {
		t.Errorf("Vault logins = %d, want 1 for %d concurrent callers", got, n)
	}
	if got := api.requests.Load(); got != 1 {
		t.Errorf("TokenRequests = %d, want 1", got)
	}
	if got := testutil.ToFloat64(m.Logins.WithLabelValues(MethodKubernetes)); got != 1 {
		t.Errorf("logins metric = %v, want 1", got)
	}
}

// While one caller's login waits on a slow API server (its renewal failed,
// so it logs in afresh), callers whose token still works are not held up:
// no API call runs under the client's lock.
func TestSlowLoginDoesNotStallCallersWithAWorkingToken(t *testing.T) {
	api := newSlowAPIServer(t)
	var renewFails atomic.Bool
	fv := &fakeVault{t: t, sign: func(string) (int, any) { return signOK() }}
	fv.login = func(n int32) (int, any) { return loginOK(fmt.Sprintf("token-%d", n), 3600) }
	fv.renew = func() (int, any) {
		if renewFails.Load() {
			return vaultErr(http.StatusInternalServerError, "renewal broken")
		}
		return loginOK("token-1", 3600)
	}
	clk := clocktesting.NewFakeClock(time.Unix(1_900_000_000, 0))
	c, _ := newKubernetesClient(t, fv, api, clk)
	if _, err := c.Sign(context.Background(), leafReq); err != nil {
		t.Fatal(err)
	}
	// Past half the TTL: the next caller renews, fails, and logs in through
	// the held API server.
	clk.Step(31 * time.Minute)
	renewFails.Store(true)
	api.hold.Store(true)
	slow := make(chan error, 1)
	go func() {
		_, err := c.Sign(context.Background(), leafReq)
		slow <- err
	}()
	waitFor(t, "the re-login's TokenRequest", func() bool { return api.requests.Load() == 2 })
	fast := make(chan error, 1)
	go func() {
		for range 5 {
			if _, err := c.Sign(context.Background(), leafReq); err != nil {
				fast <- err
				return
			}
		}
		fast <- nil
	}()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatalf("a call during the slow login: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("calls with a working token stalled behind the slow login")
	}
	if gen := c.TokenGeneration(); gen != 1 {
		t.Errorf("token generation %d during the login, want the working token 1", gen)
	}
	api.unblock()
	if err := <-slow; err != nil {
		t.Fatalf("the caller that logged in: %v", err)
	}
	if got := fv.logins.Load(); got != 2 || c.TokenGeneration() != 2 {
		t.Errorf("logins = %d, generation %d; want 2 and 2", got, c.TokenGeneration())
	}
}
