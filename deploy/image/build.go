package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// BinaryPath is where the controller lives in the image; the image's
	// entrypoint, which the chart runs with its args (it sets no command).
	BinaryPath = "/meshtrust-controller"
	// UID and GID run the controller: the chart's runAsUser and
	// runAsGroup, and distroless' "nonroot". Numeric, so that the kubelet
	// can verify runAsNonRoot without reading /etc/passwd.
	UID = 65532
	GID = 65532
	// Source is the repository the image is built from.
	Source = "https://github.com/meshtrust/meshtrust"
	// RefNameAnnotation tags the image in the OCI layout's index, so that
	// `skopeo copy oci:bin/image:<version> ...` finds it.
	RefNameAnnotation = "org.opencontainers.image.ref.name"
)

// Options describe one image.
type Options struct {
	// Binary is the static meshtrust-controller to put in the image.
	Binary string
	// Version and Revision label the image; Version also tags it.
	Version, Revision string
	// Created is the image's creation time and every file's mtime. The
	// commit time makes two builds of one commit byte-identical.
	Created time.Time
	// OS and Architecture are the binary's platform.
	OS, Architecture string
}

// Build assembles the image: one layer with the binary, a passwd and group
// entry for the non-root user and a writable /tmp, and nothing else. No base
// image: the binary is static and needs no libc, no shell and no package
// manager.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the controller binary: %w", err)
	}
	layerTar, err := rootFS(bin, o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("building the layer: %w", err)
	}
	user := strconv.Itoa(UID) + ":" + strconv.Itoa(GID)
	cfg := &v1.ConfigFile{
		Architecture: o.Architecture,
		OS:           o.OS,
		Created:      v1.Time{Time: o.Created},
		Config: v1.Config{
			User:         user,
			Entrypoint:   []string{BinaryPath},
			WorkingDir:   "/",
			Env:          []string{"HOME=/home/nonroot"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}, "8081/tcp": {}},
			Labels:       Labels(o),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("setting the image config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "make image: " + filepath.Base(BinaryPath) + " " + o.Version + ", user " + user,
			Comment:   "built with go-containerregistry, no container engine",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	return img, nil
}

// Labels are the image's OCI labels.
func Labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "meshtrust-controller",
		"org.opencontainers.image.description": "meshtrust: a cert-manager issuer backed by Vault PKI and a syncer of Istio's cacerts",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
}

// rootFS is the layer's tar: directories first, sorted, root-owned except
// the user's home, every mtime Created.
func rootFS(bin []byte, created time.Time) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	entries := []struct {
		hdr  tar.Header
		data []byte
	}{
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(group)},
		{tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(passwd)},
		{tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "home/nonroot/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: UID, Gid: GID}, nil},
		{tar.Header{Name: BinaryPath[1:], Typeflag: tar.TypeReg, Mode: 0o755}, bin},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		h.ModTime = created
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("writing %s to the layer: %w", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("writing %s to the layer: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayout replaces dir with an OCI image layout holding img, tagged
// with version. It refuses to remove a directory that holds anything but a layout.
func WriteLayout(dir string, img v1.Image, version string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("%s exists and is not an OCI image layout; not replacing it", dir)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing the old layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("creating the OCI layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{RefNameAnnotation: version})); err != nil {
		return fmt.Errorf("writing the image to %s: %w", dir, err)
	}
	return nil
}
