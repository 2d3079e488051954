package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// VaultMode chooses how the lab runs Vault.
type VaultMode int

const (
	// VaultDev runs `vault server -dev`: in-memory, unsealed, quick.
	VaultDev VaultMode = iota
	// VaultPersistent runs Vault on a file backend, initialised and unsealed
	// through the API, so a test can stop and start it with its data intact.
	VaultPersistent
	// VaultNone runs no Vault.
	VaultNone
)

// Vault is a real Vault server process listening on 127.0.0.1.
type Vault struct {
	// Addr is the server's URL, http://127.0.0.1:<port>.
	Addr string
	// RootToken is a root token for test set-up. Never log it.
	RootToken string
	// LogPath is the file that receives the server's output.
	LogPath string

	mode      VaultMode
	binary    string
	dir       string
	port      int
	unsealKey string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newVault(ctx context.Context, binary, dir string, mode VaultMode) (*Vault, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	v := &Vault{
		Addr:    fmt.Sprintf("http://127.0.0.1:%d", port),
		LogPath: filepath.Join(dir, "vault.log"),
		mode:    mode,
		binary:  binary,
		dir:     dir,
		port:    port,
	}
	if mode == VaultDev {
		token, err := randomToken()
		if err != nil {
			return nil, err
		}
		v.RootToken = token
	} else if err := v.writeConfig(); err != nil {
		return nil, err
	}
	if err := v.Start(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Vault) writeConfig() error {
	if err := os.MkdirAll(filepath.Join(v.dir, "vault-data"), 0o700); err != nil {
		return fmt.Errorf("creating Vault data directory: %w", err)
	}
	config := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
api_addr      = %q
disable_mlock = true
ui            = false
`, filepath.Join(v.dir, "vault-data"), v.port, v.Addr)
	if err := os.WriteFile(filepath.Join(v.dir, "vault.hcl"), []byte(config), 0o600); err != nil {
		return fmt.Errorf("writing Vault config: %w", err)
	}
	return nil
}

// Start starts the server and returns once it is unsealed and active. In
// persistent mode a restart reuses the same port and data, and unseals.
func (v *Vault) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil {
		return errors.New("vault is already running")
	}
	args := []string{"server"}
	if v.mode == VaultDev {
		args = append(args, "-dev", "-dev-no-store-token",
			"-dev-root-token-id="+v.RootToken,
			"-dev-listen-address=127.0.0.1:"+strconv.Itoa(v.port))
	} else {
		args = append(args, "-config="+filepath.Join(v.dir, "vault.hcl"))
	}
	logFile, err := os.OpenFile(v.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening Vault log: %w", err)
	}
	cmd := exec.Command(v.binary, args...)
	cmd.Dir = v.dir
	// HOME keeps Vault's token helper away from the user's ~/.vault-token.
	cmd.Env = append(os.Environ(), "HOME="+v.dir, "VAULT_ADDR="+v.Addr, "SKIP_SETCAP=1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting vault: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	v.cmd, v.done = cmd, done

	if err := v.waitServing(ctx, done); err != nil {
		return err
	}
	if v.mode == VaultPersistent {
		if err := v.initAndUnseal(ctx); err != nil {
			return err
		}
	}
	return v.waitHealthy(ctx, done)
}

// Stop stops the server with SIGTERM, then SIGKILL after a grace period.
func (v *Vault) Stop(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		return nil
	}
	err := stopProcess(ctx, v.cmd, v.done)
	v.cmd, v.done = nil, nil
	return err
}

// Client returns a Vault API client that holds the root token.
func (v *Vault) Client() (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Vault client: %w", err)
	}
	c.SetToken(v.RootToken)
	return c, nil
}

func (v *Vault) anonymousClient() (*vaultapi.Client, error) {
	c, err := v.Client()
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	return c, nil
}

// waitServing waits until the listener answers sys/health at all, whatever
// the seal state.
func (v *Vault) waitServing(ctx context.Context, exited <-chan struct{}) error {
	c, err := v.anonymousClient()
	if err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, exited, "vault to listen at "+v.Addr+" (log: "+v.LogPath+")", func() (bool, error) {
		_, err := c.Sys().HealthWithContext(ctx)
		return err == nil, nil
	})
}

func (v *Vault) waitHealthy(ctx context.Context, exited <-chan struct{}) error {
	c, err := v.anonymousClient()
	if err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, exited, "vault to become active and unsealed (log: "+v.LogPath+")", func() (bool, error) {
		h, err := c.Sys().HealthWithContext(ctx)
		return err == nil && h.Initialized && !h.Sealed && !h.Standby, nil
	})
}

func (v *Vault) initAndUnseal(ctx context.Context) error {
	c, err := v.anonymousClient()
	if err != nil {
		return err
	}
	initialised, err := c.Sys().InitStatusWithContext(ctx)
	if err != nil {
		return fmt.Errorf("reading Vault init status: %w", err)
	}
	if !initialised {
		resp, err := c.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return fmt.Errorf("initialising Vault: %w", err)
		}
		v.unsealKey, v.RootToken = resp.KeysB64[0], resp.RootToken
	}
	if _, err := c.Sys().UnsealWithContext(ctx, v.unsealKey); err != nil {
		return fmt.Errorf("unsealing Vault: %w", err)
	}
	return nil
}

func stopProcess(ctx context.Context, cmd *exec.Cmd, done <-chan struct{}) error {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("process %d did not exit after SIGKILL", cmd.Process.Pid)
	}
}

// poll calls check every 50ms until it reports done, the deadline passes,
// the context ends, or exited closes (the process died).
func poll(ctx context.Context, timeout time.Duration, exited <-chan struct{}, what string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		ok, err := check()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-exited:
			return fmt.Errorf("waiting for %s: the process exited", what)
		case <-ticker.C:
		}
	}
}

func freePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	// Vault reserves the hvs. prefix for tokens it mints itself.
	return "lab-" + hex.EncodeToString(b), nil
}
