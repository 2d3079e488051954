package lab

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestWriteAtomicDir checks kubelet's layout through a sequence of
// projections: visible names are symlinks through ..data, ..data points to
// the one hidden directory of the current version, a key dropped from the
// payload disappears, an unchanged payload writes nothing, and a key that
// is not a plain file name is refused.
func TestWriteAtomicDir(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		name      string
		payload   map[string][]byte
		wantWrite bool
		wantErr   string
	}{
		{"an optional volume whose object is missing", map[string][]byte{}, true, ""},
		{"the object appears", map[string][]byte{"ca-cert.pem": []byte("a"), "root-cert.pem": []byte("r")}, true, ""},
		{"unchanged", map[string][]byte{"ca-cert.pem": []byte("a"), "root-cert.pem": []byte("r")}, false, ""},
		{"one key changes", map[string][]byte{"ca-cert.pem": []byte("b"), "root-cert.pem": []byte("r")}, true, ""},
		{"a key is added, another dropped", map[string][]byte{"ca-cert.pem": []byte("b"), "ca-crl.pem": []byte("c")}, true, ""},
		{"a key with a path", map[string][]byte{"sub/ca-cert.pem": []byte("x")}, false, "cannot be a file name"},
		{"a key kubelet reserves", map[string][]byte{"..data": []byte("x")}, false, "cannot be a file name"},
		{"the object is deleted", map[string][]byte{}, true, ""},
	}
	current := map[string][]byte{}
	for _, st := range steps {
		at, err := writeAtomicDir(dir, st.payload, 0o600)
		wrote := !at.IsZero()
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Fatalf("%s: error %v, want one containing %q", st.name, err, st.wantErr)
			}
			continue
		}
		if err != nil || wrote != st.wantWrite {
			t.Fatalf("%s: wrote %v, error %v; want wrote %v", st.name, wrote, err, st.wantWrite)
		}
		current = st.payload
		checkLayout(t, st.name, dir, current)
	}
}

func checkLayout(t *testing.T, step, dir string, payload map[string][]byte) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		t.Fatalf("%s: %s: %v", step, dataLink, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var hidden, visible []string
	for _, e := range entries {
		switch n := e.Name(); {
		case n == dataLink:
		case strings.HasPrefix(n, ".."):
			hidden = append(hidden, n)
		default:
			visible = append(visible, n)
		}
	}
	if len(hidden) != 1 || hidden[0] != target || !strings.HasPrefix(target, "..20") {
		t.Fatalf("%s: hidden entries %v, ..data -> %s; want only the timestamped directory it points to", step, hidden, target)
	}
	if want := slices.Sorted(maps.Keys(payload)); !slices.Equal(visible, want) {
		t.Fatalf("%s: visible files %v, want %v", step, visible, want)
	}
	for key, content := range payload {
		link, err := os.Readlink(filepath.Join(dir, key))
		if err != nil || link != filepath.Join(dataLink, key) {
			t.Fatalf("%s: %s -> %q (%v), want %s/%s", step, key, link, err, dataLink, key)
		}
		got, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil || string(got) != string(content) {
			t.Fatalf("%s: %s reads %q (%v), want %q", step, key, got, err, content)
		}
	}
}
