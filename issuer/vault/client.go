package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
)

// Config is everything a Client needs. It carries no secret values: those
// come from Auth's functions at login time.
type Config struct {
	// Address is Vault's base URL.
	Address string
	// Namespace is the Vault Enterprise namespace; empty for none.
	Namespace string
	// CACert is a PEM bundle trusted for Vault's TLS certificate; empty
	// means the system trust store.
	CACert []byte
	// Auth is how the client obtains its token.
	Auth Auth
	// Timeout bounds each HTTP call to Vault; zero means 30s.
	Timeout time.Duration
	// RootsTTL is how long an issuer's trust anchors are cached; zero means 1m.
	// Roots change only during a rotation, and a minute's delay in showing a
	// newly added root is harmless because the old root stays live.
	RootsTTL time.Duration
	// IdleConnections is how many idle connections to Vault are kept for
	// reuse: at least as many as calls run at once (the request workers),
	// or every call over it opens a new connection, a TLS handshake that
	// Vault pays for. Zero means Go's pooled default, GOMAXPROCS+1.
	IdleConnections int
}

// Client talks to one Vault server on behalf of one issuer. It keeps a single
// token, logs in lazily, renews the token past half its TTL, and logs in
// again once when Vault answers 403. It is safe for concurrent use.
type Client struct {
	api      *vaultapi.Client
	auth     Auth
	metrics  *Metrics
	clock    clock.PassiveClock
	rootsTTL time.Duration
	// refreshTimeout bounds one login or renewal, which runs on behalf of
	// every caller waiting for it, whatever their own contexts.
	refreshTimeout time.Duration

	// flight collapses concurrent logins and renewals into one. No remote
	// call (Vault's, or the Kubernetes API server's behind Credentials) runs
	// under mu: a slow one must not stall callers whose token still works.
	flight singleflight.Group

	// mu guards tok and refreshing, and nothing else.
	mu  sync.Mutex
	tok tokenState
	// refreshing is true while a login or renewal is in flight.
	refreshing bool

	rootsMu sync.Mutex
	roots   map[string]cachedRoots
}

type tokenState struct {
	value string
	// gen increases with every new token so that a 403 only invalidates the
	// token it was seen with.
	gen       uint64
	obtained  time.Time
	ttl       time.Duration // zero: never expires
	loginTTL  time.Duration // TTL granted at login, to spot a capped renewal
	renewable bool
}

type cachedRoots struct {
	certs   []*x509.Certificate
	expires time.Time
}

type opKey struct{}

// NewClient builds a Client. It reads no VAULT_* environment variable that
// could change where or as whom it talks.
func NewClient(cfg Config, m *Metrics, clk clock.PassiveClock) (*Client, error) {
	if err := cfg.Auth.validate(); err != nil {
		return nil, err
	}
	if m == nil {
		var err error
		if m, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	transport := cleanhttp.DefaultPooledTransport()
	if cfg.IdleConnections > 0 {
		transport.MaxIdleConnsPerHost = cfg.IdleConnections
	}
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CACert) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CACert) {
			return nil, errors.New("the Vault CA bundle holds no PEM certificate")
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	apiCfg := &vaultapi.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: &instrumented{base: transport, m: m},
			// vault/api handles redirects itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Timeout: timeout,
		// Retries belong to the controllers' rate-limited queues, where a
		// sealed Vault leaves requests pending instead of blocking a worker.
		MaxRetries: 0,
	}
	api, err := vaultapi.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("building Vault client for %s: %w", cfg.Address, err)
	}
	api.ClearToken() // NewClient reads VAULT_TOKEN.
	if cfg.Namespace != "" {
		api.SetNamespace(cfg.Namespace)
	} else {
		api.ClearNamespace()
	}
	rootsTTL := cfg.RootsTTL
	if rootsTTL == 0 {
		rootsTTL = time.Minute
	}
	return &Client{api: api, auth: cfg.Auth, metrics: m, clock: clk, rootsTTL: rootsTTL, refreshTimeout: 2 * timeout, roots: map[string]cachedRoots{}}, nil
}

// instrumented records every HTTP exchange with Vault in the metrics. The
// operation name travels in the request context.
type instrumented struct {
	base http.RoundTripper
	m    *Metrics
}

func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	op, _ := req.Context().Value(opKey{}).(string)
	if op == "" {
		op = "other"
	}
	start := time.Now() // metrics only; never drives behaviour
	resp, err := t.base.RoundTrip(req)
	t.m.Duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.m.Requests.WithLabelValues(op, code).Inc()
	return resp, err
}

func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// tokenNeed says what a token needs at now.
type tokenNeed int

const (
	tokenFine  tokenNeed = iota
	tokenRenew           // usable, but past half its TTL
	tokenLogin           // absent, expired or about to expire
)

func (t tokenState) need(now time.Time) tokenNeed {
	if t.value == "" {
		return tokenLogin
	}
	if t.ttl == 0 {
		return tokenFine
	}
	age := now.Sub(t.obtained)
	switch {
	case age >= t.ttl-5*time.Second:
		return tokenLogin
	case t.renewable && age >= t.ttl/2:
		return tokenRenew
	}
	return tokenFine
}

// ensureToken returns a usable token's generation, logging in or renewing
// first when needed. Concurrent callers share one login or renewal; while
// one is in flight, a caller whose token still works goes on with it
// instead of waiting.
func (c *Client) ensureToken(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	need, gen, refreshing := c.tok.need(c.clock.Now()), c.tok.gen, c.refreshing
	c.mu.Unlock()
	if need == tokenFine || need == tokenRenew && refreshing {
		return gen, nil
	}
	ch := c.flight.DoChan("token", func() (any, error) {
		// The flight serves every waiter, so no single caller's
		// cancellation may cut it short; its own timeout bounds it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.refreshTimeout)
		defer cancel()
		return c.refresh(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return 0, r.Err
		}
		return r.Val.(uint64), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for the Vault login: %w", ctx.Err())
	}
}

// refresh renews the token or logs in, whichever it needs now, and returns
// the generation of the token it leaves. It runs once per flight.
func (c *Client) refresh(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	c.refreshing = true
	t := c.tok
	now := c.clock.Now()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.refreshing = false
		c.mu.Unlock()
	}()
	switch t.need(now) {
	case tokenFine:
		// A flight that just ended did the work.
		return t.gen, nil
	case tokenRenew:
		if gen, err := c.renew(ctx, t, now); err == nil {
			return gen, nil
		}
		// A failed renewal is no reason to fail the call: log in afresh.
	}
	return c.login(ctx, now)
}

func (c *Client) login(ctx context.Context, now time.Time) (uint64, error) {
	if c.auth.Method == MethodToken {
		token, err := c.auth.Token(ctx)
		if err != nil {
			return 0, fmt.Errorf("reading Vault token: %w", err)
		}
		if token == "" {
			return 0, errors.New("the Vault token is empty")
		}
		return c.setToken(token, now, 0, false), nil
	}
	body, err := c.auth.Credentials(ctx)
	if err != nil {
		return 0, fmt.Errorf("gathering %s login credentials: %w", c.auth.Method, err)
	}
	path := c.auth.loginPath()
	c.metrics.Logins.WithLabelValues(c.auth.Method).Inc()
	// Login must not carry a stale token: some auth methods reject that.
	api, err := c.api.CloneWithHeaders()
	if err != nil {
		return 0, fmt.Errorf("preparing Vault login: %w", err)
	}
	api.ClearToken()
	secret, err := api.Logical().WriteWithContext(withOp(ctx, "login"), path, body)
	if err != nil {
		return 0, wrapError("login", path, err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return 0, &Error{Op: "login", Path: path, StatusCode: http.StatusOK, Messages: []string{"the response carries no client token"}}
	}
	ttl := time.Duration(secret.Auth.LeaseDuration) * time.Second
	return c.setToken(secret.Auth.ClientToken, now, ttl, secret.Auth.Renewable && ttl > 0), nil
}

func (c *Client) setToken(token string, now time.Time, ttl time.Duration, renewable bool) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tok = tokenState{
		value:     token,
		gen:       c.tok.gen + 1,
		obtained:  now,
		ttl:       ttl,
		loginTTL:  ttl,
		renewable: renewable,
	}
	c.api.SetToken(token)
	return c.tok.gen
}

// renew renews token t, which the client carries.
func (c *Client) renew(ctx context.Context, t tokenState, now time.Time) (uint64, error) {
	path := "auth/token/renew-self"
	secret, err := c.api.Logical().WriteWithContext(withOp(ctx, "renew"), path, map[string]any{
		"increment": int64(t.loginTTL / time.Second),
	})
	if err != nil {
		return 0, wrapError("renew", path, err)
	}
	if secret == nil || secret.Auth == nil {
		return 0, &Error{Op: "renew", Path: path, StatusCode: http.StatusOK, Messages: []string{"the response carries no auth"}}
	}
	ttl := time.Duration(secret.Auth.LeaseDuration) * time.Second
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok.gen != t.gen {
		// A 403 invalidated it meanwhile; the renewal changes nothing.
		return 0, errors.New("the renewed token was invalidated meanwhile")
	}
	c.tok.obtained = now
	c.tok.ttl = ttl
	// Once the token's max TTL caps renewals, renewing on every call would
	// only add load; let it run out and log in again.
	c.tok.renewable = secret.Auth.Renewable && ttl > c.tok.loginTTL/2
	return c.tok.gen, nil
}

func (c *Client) invalidate(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok.gen == gen {
		c.tok.value = ""
	}
}

// do runs fn with a valid token. On 403 it logs in again once and retries;
// a second 403 is returned with Vault's own message.
func (c *Client) do(ctx context.Context, fn func() error) error {
	gen, err := c.ensureToken(ctx)
	if err != nil {
		return err
	}
	err = fn()
	if !IsPermissionDenied(err) {
		return err
	}
	c.invalidate(gen)
	if _, lerr := c.ensureToken(ctx); lerr != nil {
		// The login failure decides what happens next (the issuer waits),
		// so it is the error wrapped; the 403 is context.
		return fmt.Errorf("logging in again after a 403 (%v): %w", err, lerr)
	}
	return fn()
}

// TokenGeneration is the number of tokens obtained so far; tests use it.
func (c *Client) TokenGeneration() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok.gen
}
