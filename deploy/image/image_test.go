package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"sigs.k8s.io/yaml"
)

// TestImage loads the image `make image` wrote to bin/image, checks what
// the chart relies on (tag, user, entrypoint, labels), then takes the
// binary out of the layer and runs it.
func TestImage(t *testing.T) {
	root := repoRoot(t)
	chart := readChart(t, root)
	dir := filepath.Join(root, "bin", "image")
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("%v (run `make image`)", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("the layout holds %d images, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if got := desc.Annotations[RefNameAnnotation]; got != chart.AppVersion {
		t.Errorf("image tagged %q, want the chart's appVersion %q (the chart's default image tag)", got, chart.AppVersion)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	// Digests, sizes and diff IDs all agree: what a registry would check.
	if err := validate.Image(img); err != nil {
		t.Fatalf("the image does not validate: %v", err)
	}
	size, err := compressedSize(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %.1f MB compressed (manifest, config, layer)", desc.Digest, float64(size)/1e6)

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	wantUser := strconv.Itoa(chart.RunAsUser) + ":" + strconv.Itoa(chart.RunAsGroup)
	if cfg.Config.User != wantUser {
		t.Errorf("user %q, want %q: the chart's runAsUser:runAsGroup, numeric so the kubelet can check runAsNonRoot", cfg.Config.User, wantUser)
	}
	if chart.RunAsUser == 0 {
		t.Error("the chart runs as root")
	}
	// The chart sets args only, so the entrypoint is what runs them.
	if !slices.Equal(cfg.Config.Entrypoint, []string{BinaryPath}) || len(cfg.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [%s] and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd, BinaryPath)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.title":   "meshtrust-controller",
		"org.opencontainers.image.version": chart.AppVersion,
		"org.opencontainers.image.source":  Source,
	} {
		if got := cfg.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	// Outside a git checkout the Makefile stamps "unknown"; either way the
	// label and the binary must agree (--version below).
	rev := cfg.Config.Labels["org.opencontainers.image.revision"]
	if rev == "" {
		t.Error("no revision label")
	}
	if _, err := time.Parse(time.RFC3339, cfg.Config.Labels["org.opencontainers.image.created"]); err != nil {
		t.Errorf("created label: %v", err)
	}

	bin := extractBinary(t, img)
	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Fatal("the binary has a dynamic loader (PT_INTERP): it needs libc, which the image does not have")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Fatalf("the binary links %v", libs)
		}
	})
	t.Run("--version", func(t *testing.T) {
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want := "meshtrust-controller " + chart.AppVersion + " (revision " + rev + ","
		if !strings.HasPrefix(string(out), want) {
			t.Errorf("--version printed %q, want it to start with %q", out, want)
		}
	})
	t.Run("--help", func(t *testing.T) {
		out, err := exec.Command(bin, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, flag := range []string{"--version", "--metrics-bind-address", "--enable-issuer", "--syncer-watch-namespaces"} {
			if !bytes.Contains(out, []byte(flag)) {
				t.Errorf("--help does not list %s:\n%s", flag, out)
			}
		}
	})
	t.Run("an unknown flag fails", func(t *testing.T) {
		// The positive cases above mean something only if the binary can
		// also refuse.
		err := exec.Command(bin, "--no-such-flag").Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("exit: %v, want a non-zero exit", err)
		}
	})
}

// extractBinary writes the entrypoint's file from the image's flattened
// filesystem to a temporary file and checks its owner and mode.
func extractBinary(t *testing.T, img v1.Image) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if "/"+strings.TrimPrefix(h.Name, "./") != BinaryPath {
			continue
		}
		if h.Mode&0o022 != 0 || h.Mode&0o111 == 0 || h.Uid != 0 {
			t.Errorf("%s: mode %o uid %d, want executable, root-owned, not writable by the controller", h.Name, h.Mode, h.Uid)
		}
		path := filepath.Join(t.TempDir(), "meshtrust-controller")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Fatalf("no %s in the image; it holds %v", BinaryPath, names)
	return ""
}

// chart is what the image must agree with in deploy/charts/meshtrust.
type chart struct {
	AppVersion            string
	RunAsUser, RunAsGroup int
}

func readChart(t *testing.T, root string) chart {
	t.Helper()
	dir := filepath.Join(root, "deploy", "charts", "meshtrust")
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		Image struct {
			Tag string `json:"tag"`
		} `json:"image"`
		PodSecurityContext struct {
			RunAsUser  int `json:"runAsUser"`
			RunAsGroup int `json:"runAsGroup"`
		} `json:"podSecurityContext"`
	}
	for file, into := range map[string]any{"Chart.yaml": &meta, "values.yaml": &values} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if meta.AppVersion == "" {
		t.Fatal("Chart.yaml has no appVersion")
	}
	if values.Image.Tag != "" {
		t.Errorf("values.yaml pins image.tag %q; empty makes the chart use its appVersion, the tag `make image` gives", values.Image.Tag)
	}
	return chart{AppVersion: meta.AppVersion, RunAsUser: values.PodSecurityContext.RunAsUser, RunAsGroup: values.PodSecurityContext.RunAsGroup}
}

// repoRoot is the nearest directory above this one whose go.mod declares
// the meshtrust module.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/meshtrust/meshtrust\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod for github.com/meshtrust/meshtrust above the working directory")
		}
		dir = parent
	}
}
