package vaultadmin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxSecretIDFileSize bounds what is read from --secret-id-file; a secret ID
// is a UUID, so anything longer is not one.
const maxSecretIDFileSize = 1024

// planSecretIDFile plans to keep the secret ID already in the file while
// Vault still accepts it, and to mint a new one only when there is none.
// Minting on every run would leave each earlier, never-expiring secret ID
// valid and unaccounted for. The value is never printed.
func (p *EnrollPlan) planSecretIDFile(ctx context.Context, c *Client, o EnrollOptions, roleExists bool, mint func(context.Context) (string, error)) error {
	const name = "AppRole secret ID"
	path := o.AppRole.SecretIDFile
	createSecret := fmt.Sprintf("; create Secret %s/%s (key %s) from it", o.AppRole.SecretNamespace, o.AppRole.SecretName, secretIDKey)
	held, err := readSecretIDFile(path)
	if err != nil {
		return err
	}
	live := false
	if held != "" && roleExists {
		if live, err = SecretIDLive(ctx, c, o.AuthMount, o.Role, held, o.Now); err != nil {
			return err
		}
	}
	if live {
		// Kept, only tightening the file's mode: an earlier version, or a
		// person, may have left it readable.
		loose, err := looseMode(path)
		if err != nil {
			return fmt.Errorf("securing --secret-id-file: %w", err)
		}
		detail := path + " already holds a secret ID Vault accepts; kept"
		if !loose {
			p.check(name, SystemFile, "%s", detail+createSecret)
			return nil
		}
		p.change(Step{Name: name, System: SystemFile, Detail: detail + ", mode set to 0600" + createSecret, Before: path + " readable by others", After: path + " mode 0600"},
			func(context.Context, *Step) error {
				if err := os.Chmod(path, 0o600); err != nil {
					return fmt.Errorf("securing --secret-id-file: %w", err)
				}
				return nil
			})
		return nil
	}
	detail, before := "new secret ID written to "+path, Absent
	if held != "" {
		detail += " (the one it held is no longer accepted by Vault)"
		before = path + " holds a secret ID Vault no longer accepts"
	}
	p.change(Step{Name: name, System: SystemVault + "+" + SystemFile, Detail: detail + createSecret, Before: before, After: path + " holds a new secret ID (value never shown), mode 0600"},
		func(ctx context.Context, _ *Step) error {
			id, err := mint(ctx)
			if err != nil {
				return err
			}
			if err := writePrivateFile(path, []byte(id)); err != nil {
				return fmt.Errorf("writing --secret-id-file: %w", err)
			}
			return nil
		})
	return nil
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

// looseMode reports whether path's mode is anything but 0600.
func looseMode(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return fi.Mode().Perm() != 0o600, nil
}
