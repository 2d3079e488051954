package status

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Export writes each key of the cacerts Secret to dir/<context>/<key>, the
// way a Secret volume mounts it for istiod. The files include the CA's
// private key, so directories are 0700 and files 0600. The folder is built
// beside its final place and renamed over the old one, so that it holds
// exactly the Secret's keys: a file of an earlier layout left beside the new
// one would show istiod a CA it does not have.
func Export(dir, context string, s *corev1.Secret) ([]string, error) {
	if s == nil {
		return nil, nil
	}
	keys, err := exportKeys(s)
	if err != nil {
		return nil, fmt.Errorf("exporting cacerts of %s: %w", context, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("exporting cacerts of %s: %w", context, err)
	}
	tmp, err := os.MkdirTemp(dir, ".export-*")
	if err != nil {
		return nil, fmt.Errorf("exporting cacerts of %s: %w", context, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(tmp, k), s.Data[k], 0o600); err != nil {
			return nil, fmt.Errorf("exporting cacerts of %s: %w", context, err)
		}
	}
	target := filepath.Join(dir, DirName(context))
	if err := replaceDir(tmp, target); err != nil {
		return nil, fmt.Errorf("exporting cacerts of %s: %w", context, err)
	}
	written := make([]string, len(keys))
	for i, k := range keys {
		written[i] = filepath.Join(target, k)
	}
	return written, nil
}

// exportKeys returns the Secret's keys, sorted, refusing any that is not a
// plain file name.
func exportKeys(s *corev1.Secret) ([]string, error) {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		if !safeName(k) {
			return nil, fmt.Errorf("key %q cannot be a file name", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// replaceDir puts the directory from in place of to, removing whatever was
// there. The old folder is moved aside first (rename cannot replace a
// directory that has files), and put back if the new one cannot move in.
func replaceDir(from, to string) error {
	aside := from + ".old"
	moved := true
	if err := os.Rename(to, aside); errors.Is(err, fs.ErrNotExist) {
		moved = false
	} else if err != nil {
		return fmt.Errorf("moving the earlier export aside: %w", err)
	}
	if err := os.Rename(from, to); err != nil {
		if moved {
			_ = os.Rename(aside, to)
		}
		return err
	}
	if moved {
		if err := os.RemoveAll(aside); err != nil {
			return fmt.Errorf("removing the earlier export: %w", err)
		}
	}
	return nil
}

// CheckExportNames refuses contexts whose export folders would be the same:
// DirName maps every character outside [A-Za-z0-9._-] to "_", so "a/b" and
// "a:b" collide, and one cluster's files would replace the other's. Names
// differing only in case are refused too, since they collide on
// case-insensitive file systems.
func CheckExportNames(contexts []string) error {
	seen := make(map[string]string, len(contexts))
	for _, c := range contexts {
		d := DirName(c)
		key := strings.ToLower(d)
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("invalid --export: contexts %q and %q would both export to the folder %s; export them in separate runs", prev, c, d)
		}
		seen[key] = c
	}
	return nil
}

func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && filepath.Base(s) == s && !filepath.IsAbs(s)
}

// DirName turns a context name into a directory name: context names such as
// EKS ARNs hold slashes and colons.
func DirName(context string) string {
	b := []byte(context)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '_'
		}
	}
	if s := string(b); safeName(s) {
		return s
	}
	return "_" + string(b)
}
