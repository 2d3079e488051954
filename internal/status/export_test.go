package status

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCheckExportNames(t *testing.T) {
	for _, tc := range []struct {
		contexts []string
		want     string // empty: accepted
	}{
		{contexts: []string{"east", "west"}},
		{contexts: []string{"arn:aws:eks:eu-west-1:1:cluster/east", "arn:aws:eks:eu-west-1:1:cluster/west"}},
		{contexts: []string{"a/b", "a:b"}, want: `contexts "a/b" and "a:b" would both export to the folder a_b`},
		{contexts: []string{"a_b", "x", "a b"}, want: `contexts "a_b" and "a b"`},
		{contexts: []string{"East", "east"}, want: `contexts "East" and "east"`},
		{contexts: []string{"..", "_.."}, want: `contexts ".." and "_.."`},
	} {
		err := CheckExportNames(tc.contexts)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want accepted", tc.contexts, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error containing %q", tc.contexts, err, tc.want)
		}
	}
}

func TestExportReplacesTheFolder(t *testing.T) {
	dir := t.TempDir()
	old := &corev1.Secret{Data: map[string][]byte{"ca-cert.pem": []byte("old cert"), "ca-key.pem": []byte("old key")}}
	if _, err := Export(dir, "a/b", old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "a_b", "ca-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	cur := &corev1.Secret{Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("key"), "ca.crt": []byte("root")}}
	written, err := Export(dir, "a/b", cur)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "a_b")
	want := []string{filepath.Join(target, "ca.crt"), filepath.Join(target, "tls.crt"), filepath.Join(target, "tls.key")}
	if !slices.Equal(written, want) {
		t.Errorf("written %q, want %q", written, want)
	}
	entries, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if !slices.Equal(names, []string{"ca.crt", "tls.crt", "tls.key"}) {
		t.Errorf("folder holds %q: the earlier layout's files must be gone", names)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v, want 0700", fi.Mode().Perm())
	}
	if top, _ := os.ReadDir(dir); len(top) != 1 {
		t.Errorf("export left %d entries in %s, want only a_b", len(top), dir)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "tls.key")); string(b) != "key" {
		t.Errorf("tls.key = %q", b)
	}
}

func TestExportRefusesABadKeyAndKeepsTheOldFolder(t *testing.T) {
	dir := t.TempDir()
	if _, err := Export(dir, "east", &corev1.Secret{Data: map[string][]byte{"ca.crt": []byte("root")}}); err != nil {
		t.Fatal(err)
	}
	_, err := Export(dir, "east", &corev1.Secret{Data: map[string][]byte{"../escape": []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), `key "../escape" cannot be a file name`) {
		t.Fatalf("got %v, want a refusal naming the key", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "east", "ca.crt")); err != nil || string(b) != "root" {
		t.Errorf("the earlier export is damaged: %q %v", b, err)
	}
	if top, _ := os.ReadDir(dir); len(top) != 1 {
		t.Errorf("a refused export left %d entries in %s", len(top), dir)
	}
}
