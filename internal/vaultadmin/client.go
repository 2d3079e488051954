package vaultadmin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// ClientConfig says how to reach Vault. It mirrors the vault CLI's
// environment variables.
type ClientConfig struct {
	// Addr is the Vault address (VAULT_ADDR), e.g. "https://vault:8200".
	Addr string
	// Token authenticates every call (VAULT_TOKEN, else ~/.vault-token). It is
	// never printed.
	Token string
	// Namespace is the Vault Enterprise namespace (VAULT_NAMESPACE); empty for none.
	Namespace string
	// CACert is a PEM file of CAs that verify Vault's TLS certificate (VAULT_CACERT).
	CACert string
	// Timeout bounds each HTTP request.
	Timeout time.Duration
}

// ConfigFromEnv reads the vault CLI's environment variables through getenv,
// falling back to the token helper file ~/.vault-token like the vault CLI.
func ConfigFromEnv(getenv func(string) string) ClientConfig {
	cfg := ClientConfig{
		Addr:      getenv("VAULT_ADDR"),
		Token:     getenv("VAULT_TOKEN"),
		Namespace: getenv("VAULT_NAMESPACE"),
		CACert:    getenv("VAULT_CACERT"),
		Timeout:   30 * time.Second,
	}
	if cfg.Addr == "" {
		cfg.Addr = "https://127.0.0.1:8200"
	}
	if cfg.Token == "" {
		if home := getenv("HOME"); home != "" {
			if b, err := os.ReadFile(filepath.Join(home, ".vault-token")); err == nil {
				cfg.Token = strings.TrimSpace(string(b))
			}
		}
	}
	return cfg
}

// Client is a Vault API client plus the address it talks to, so every error
// can name it.
type Client struct {
	// API is the underlying client, for callers that need a raw call.
	API *vaultapi.Client
	// Addr is the address errors name.
	Addr string
}

// NewClient builds a client from cfg. It does not contact Vault.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("no Vault address: set VAULT_ADDR or --vault-addr")
	}
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", vc.Error)
	}
	vc.Address = cfg.Addr
	// A CLI should fail fast and let the person retry; the default retries
	// with backoff make an unreachable Vault look like a hang.
	vc.MaxRetries = 0
	if cfg.Timeout > 0 {
		vc.Timeout = cfg.Timeout
	}
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vaultapi.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("loading VAULT_CACERT %s: %w", cfg.CACert, err)
		}
	}
	api, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client for %s: %w", cfg.Addr, err)
	}
	// NewClient also reads VAULT_TOKEN and VAULT_NAMESPACE from the process
	// environment; the explicit configuration wins.
	api.SetToken(cfg.Token)
	if cfg.Namespace != "" {
		api.SetNamespace(cfg.Namespace)
	} else {
		api.ClearNamespace()
	}
	return &Client{API: api, Addr: cfg.Addr}, nil
}

// Preflight checks that Vault answers, is unsealed and accepts the token,
// so that the first real step fails with a clear reason instead of a 403 on
// some path. It returns Vault's version.
func (c *Client) Preflight(ctx context.Context) (string, error) {
	st, err := c.API.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return "", wrap(c.Addr, "checking seal status", err)
	}
	if st.Sealed {
		return st.Version, &Error{Addr: c.Addr, Op: "checking seal status", Status: 503, Cause: "Vault is sealed"}
	}
	if c.API.Token() == "" {
		return st.Version, &Error{Addr: c.Addr, Op: "authenticating", Cause: "no token: set VAULT_TOKEN"}
	}
	if _, err := c.API.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		if IsStatus(err, 403) {
			return st.Version, &Error{Addr: c.Addr, Op: "looking up the token", Status: 403, Err: err,
				Cause: "token rejected (HTTP 403: wrong, expired or revoked token)"}
		}
		return st.Version, wrap(c.Addr, "looking up the token", err)
	}
	return st.Version, nil
}

func (c *Client) read(ctx context.Context, op, path string) (*vaultapi.Secret, error) {
	s, err := c.API.Logical().ReadWithContext(ctx, path)
	return s, wrap(c.Addr, op, err)
}

func (c *Client) write(ctx context.Context, op, path string, data map[string]any) (*vaultapi.Secret, error) {
	s, err := c.API.Logical().WriteWithContext(ctx, path, data)
	return s, wrap(c.Addr, op, err)
}

// patch sends a JSON merge patch, which changes only the fields in data;
// a write to the same path resets the fields it omits.
func (c *Client) patch(ctx context.Context, op, path string, data map[string]any) (*vaultapi.Secret, error) {
	s, err := c.API.Logical().JSONMergePatch(ctx, path, data)
	return s, wrap(c.Addr, op, err)
}

func (c *Client) delete(ctx context.Context, op, path string) error {
	_, err := c.API.Logical().DeleteWithContext(ctx, path)
	return wrap(c.Addr, op, err)
}

func (c *Client) list(ctx context.Context, op, path string) ([]string, error) {
	s, err := c.API.Logical().ListWithContext(ctx, path)
	if err != nil {
		return nil, wrap(c.Addr, op, err)
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	raw, _ := s.Data["keys"].([]any)
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		if ks, ok := k.(string); ok {
			out = append(out, ks)
		}
	}
	return out, nil
}
