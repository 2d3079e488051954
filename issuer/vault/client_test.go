package vault

import (
	"context"
	"encoding/json"
	"errors"
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
	srv := httptest.NewServer(fv)
	t.Cleanup(srv.Close)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	auth := AppRoleAuth("approle", "role-id", func(context.Context) (string, error) { return "secret-id", nil })
	c, err := NewClient(Config{Address: srv.URL, Auth: auth}, m, clocktesting.NewFakeClock(time.Unix(1_900_000_000, 0)))
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
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := c.Sign(context.Background(), leafReq)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
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
