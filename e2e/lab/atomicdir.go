package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The names kubelet's atomic writer reserves in a volume directory.
const (
	dataLink    = "..data"
	newDataLink = "..data_tmp"
)

// writeAtomicDir projects payload (file name -> content) into dir the way
// kubelet's atomic writer projects a Secret or ConfigMap volume:
//
//  1. the payload goes into a new hidden directory named after the time,
//     "..2006_01_02_15_04_05.<random>";
//  2. every key gets a visible symlink "<key> -> ..data/<key>" (once; it
//     keeps pointing through ..data);
//  3. a symlink "..data_tmp" to the new directory is renamed over "..data",
//     which swaps every file at once;
//  4. visible symlinks of keys no longer in the payload are removed, then
//     the previous hidden directory.
//
// A reader that opens files through the visible names sees either the old
// set or the new one, never a mix; a watcher of dir sees the hidden
// directory and "..data" appear, as istiod's watcher does in a pod. It
// returns when the new version became visible (the rename), or the zero
// time when it wrote nothing: an unchanged payload is not rewritten, as
// kubelet does not rewrite it.
func writeAtomicDir(dir string, payload map[string][]byte, mode fs.FileMode) (time.Time, error) {
	for key := range payload {
		if key == "" || strings.ContainsRune(key, os.PathSeparator) || strings.HasPrefix(key, "..") {
			return time.Time{}, fmt.Errorf("projecting into %s: key %q cannot be a file name in a volume", dir, key)
		}
	}
	oldData, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, fmt.Errorf("projecting into %s: reading %s: %w", dir, dataLink, err)
	}
	var oldKeys []string
	if oldData != "" {
		same, keys, err := sameContent(filepath.Join(dir, oldData), payload)
		if err != nil {
			return time.Time{}, fmt.Errorf("projecting into %s: %w", dir, err)
		}
		if same {
			return time.Time{}, nil
		}
		oldKeys = keys
	}

	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return time.Time{}, fmt.Errorf("projecting into %s: %w", dir, err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return time.Time{}, fmt.Errorf("projecting into %s: %w", dir, err)
	}
	for key, content := range payload {
		if err := os.WriteFile(filepath.Join(tsDir, key), content, mode); err != nil {
			_ = os.RemoveAll(tsDir)
			return time.Time{}, fmt.Errorf("projecting into %s: writing %s: %w", dir, key, err)
		}
	}
	for key := range payload {
		visible := filepath.Join(dir, key)
		if _, err := os.Lstat(visible); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join(dataLink, key), visible); err != nil {
				return time.Time{}, fmt.Errorf("projecting into %s: linking %s: %w", dir, key, err)
			}
		}
	}
	tmpLink := filepath.Join(dir, newDataLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		_ = os.RemoveAll(tsDir)
		return time.Time{}, fmt.Errorf("projecting into %s: %w", dir, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataLink)); err != nil {
		_ = os.Remove(tmpLink)
		_ = os.RemoveAll(tsDir)
		return time.Time{}, fmt.Errorf("projecting into %s: swapping %s: %w", dir, dataLink, err)
	}
	swapped := time.Now()
	var errs []error
	for _, key := range oldKeys {
		if _, kept := payload[key]; !kept {
			errs = append(errs, os.Remove(filepath.Join(dir, key)))
		}
	}
	if oldData != "" {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, oldData)))
	}
	if err := errors.Join(errs...); err != nil {
		return swapped, fmt.Errorf("projecting into %s: cleaning up the previous version: %w", dir, err)
	}
	return swapped, nil
}

// sameContent reports whether the hidden directory tsDir holds exactly
// payload, and lists the keys it holds.
func sameContent(tsDir string, payload map[string][]byte) (bool, []string, error) {
	entries, err := os.ReadDir(tsDir)
	if err != nil {
		return false, nil, fmt.Errorf("reading the current version: %w", err)
	}
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		keys = append(keys, e.Name())
	}
	if len(keys) != len(payload) {
		return false, keys, nil
	}
	for _, key := range keys {
		want, ok := payload[key]
		if !ok {
			return false, keys, nil
		}
		got, err := os.ReadFile(filepath.Join(tsDir, key))
		if err != nil {
			return false, keys, fmt.Errorf("reading the current %s: %w", key, err)
		}
		if !bytes.Equal(got, want) {
			return false, keys, nil
		}
	}
	slices.Sort(keys)
	return true, keys, nil
}
