package vaultadmin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHeldSecretID(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "as written", in: "2b2e9a1c-6f0b-4c5e-8f4a-1d2c3b4a5e6f", want: "2b2e9a1c-6f0b-4c5e-8f4a-1d2c3b4a5e6f"},
		{name: "trailing newline", in: "abc\n", want: "abc"},
		{name: "empty", in: ""},
		{name: "blank", in: " \n\t"},
		{name: "two words", in: "abc def"},
		{name: "two lines", in: "abc\ndef\n"},
		{name: "too long", in: strings.Repeat("a", maxSecretIDFileSize+1)},
	} {
		if got := heldSecretID([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestWritePrivateFileReplacesALooseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret-id")
	if err := os.WriteFile(path, []byte("old and longer content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writePrivateFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("content %q, want %q", b, "new")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left %d files in the folder, want only the secret ID file", len(entries))
	}
}

// Only a file left readable by others is planned for a mode change.
func TestLooseMode(t *testing.T) {
	for _, tc := range []struct {
		mode  os.FileMode
		loose bool
	}{{0o644, true}, {0o640, true}, {0o400, true}, {0o600, false}} {
		path := filepath.Join(t.TempDir(), "secret-id")
		if err := os.WriteFile(path, []byte("id"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		loose, err := looseMode(path)
		if err != nil || loose != tc.loose {
			t.Errorf("mode %v: loose %v, err %v; want %v", tc.mode, loose, err, tc.loose)
		}
	}
}
