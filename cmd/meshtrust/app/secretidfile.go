package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshtrust/meshtrust/cmd/meshtrust/internal/vaultops"
)

// maxSecretIDFileSize bounds what is read from --secret-id-file; a secret ID
// is a UUID, so anything longer is not one.
const maxSecretIDFileSize = 1024

// storeSecretIDFile keeps the secret ID already in path while Vault still
// accepts it, and mints a new one only when there is none. Minting on every
// run would leave each earlier, never-expiring secret ID valid and
// unaccounted for. The value is never printed.
func storeSecretIDFile(ctx context.Context, c *vaultops.Client, mount, role, path string, now time.Time) (vaultops.Step, error) {
	step := vaultops.Step{Name: "AppRole secret ID"}
	held, err := readSecretIDFile(path)
	if err != nil {
		return step, err
	}
	if held != "" {
		live, err := vaultops.SecretIDLive(ctx, c, mount, role, held, now)
		if err != nil {
			return step, err
		}
		if live {
			return keepSecretIDFile(step, path)
		}
	}
	id, err := vaultops.GenerateSecretID(ctx, c, mount, role)
	if err != nil {
		return step, err
	}
	if err := writePrivateFile(path, []byte(id)); err != nil {
		return step, fmt.Errorf("writing --secret-id-file: %w", err)
	}
	step.Changed = true
	step.Detail = "new secret ID written to " + path
	if held != "" {
		step.Detail += " (the one it held is no longer accepted by Vault)"
	}
	return step, nil
}

// keepSecretIDFile leaves a live secret ID in place, only tightening the
// file's mode: an earlier version, or a person, may have left it readable.
func keepSecretIDFile(step vaultops.Step, path string) (vaultops.Step, error) {
	tightened, err := tightenMode(path)
	if err != nil {
		return step, fmt.Errorf("securing --secret-id-file: %w", err)
	}
	step.Changed = tightened
	step.Detail = path + " already holds a secret ID Vault accepts; kept"
	if tightened {
		step.Detail += ", mode set to 0600"
	}
	return step, nil
}

// readSecretIDFile returns the secret ID path holds, or "" when the file is
// missing or holds nothing that looks like one.
func readSecretIDFile(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading --secret-id-file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretIDFileSize+1))
	if err != nil {
		return "", fmt.Errorf("reading --secret-id-file: %w", err)
	}
	return heldSecretID(b), nil
}

// heldSecretID is the file's content if it can be a secret ID: one token,
// not too long, surrounding white space ignored.
func heldSecretID(b []byte) string {
	if len(b) > maxSecretIDFileSize {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return ""
	}
	return s
}

// writePrivateFile replaces path with data, mode 0600. os.WriteFile keeps an
// existing file's mode, which may let others read the secret; a new file,
// renamed over the old one, cannot.
func writePrivateFile(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already makes the file 0600; saying so keeps it true if
	// that ever changes.
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// tightenMode sets path's mode to 0600 unless it already is, and says
// whether it changed it.
func tightenMode(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if fi.Mode().Perm() == 0o600 {
		return false, nil
	}
	return true, os.Chmod(path, 0o600)
}
