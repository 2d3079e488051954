package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshtrust-controller")
	if err := os.WriteFile(bin, []byte("\x7fELF not really a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{Binary: bin, Version: "1.2.3", Revision: "abc", Created: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), OS: "linux", Architecture: "amd64"}
}

// One commit gives one image: the same inputs give the same digest, and a
// different input a different one.
func TestBuildIsReproducible(t *testing.T) {
	o := testOptions(t)
	digest := func(o Options) string {
		img, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	first, again := digest(o), digest(o)
	if first != again {
		t.Fatalf("two builds of the same inputs differ: %s, %s", first, again)
	}
	later := o
	later.Created = o.Created.Add(time.Second)
	if digest(later) == first {
		t.Fatal("a different creation time gave the same digest: the digest does not cover it")
	}
}

func TestWriteLayout(t *testing.T) {
	o := testOptions(t)
	img, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("replaces a layout", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "image")
		for range 2 {
			if err := WriteLayout(dir, img, o.Version); err != nil {
				t.Fatal(err)
			}
		}
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Manifests) != 1 || m.Manifests[0].Annotations[RefNameAnnotation] != o.Version {
			t.Fatalf("index after two writes: %+v, want one image tagged %s", m.Manifests, o.Version)
		}
	})
	t.Run("refuses to remove anything else", func(t *testing.T) {
		dir := t.TempDir()
		keep := filepath.Join(dir, "notes.txt")
		if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := WriteLayout(dir, img, o.Version)
		if err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
			t.Fatalf("got %v, want a refusal", err)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("the directory's file is gone: %v", err)
		}
	})
}
