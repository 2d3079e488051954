package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Chart paths and the names `make manifests` renders with, relative to the
// repository root. The Makefile recipe and ManifestArgs must agree; the
// staleness test compares their outputs byte for byte.
const (
	ChartDir         = "deploy/charts/meshtrust"
	ManifestPath     = "deploy/manifests/meshtrust.yaml"
	ManifestRelease  = "meshtrust"
	ManifestNS       = "meshtrust-system"
	GeneratedCRDsDir = "deploy/crds"
	ChartCRDsDir     = "deploy/charts/meshtrust/files/crds"
)

// ManifestArgs are the helm arguments that render deploy/manifests/meshtrust.yaml.
func ManifestArgs() []string {
	return []string{"template", ManifestRelease, ChartDir, "--namespace", ManifestNS}
}

// Helm runs the helm binary that `make tools` builds from e2e/tools/helm.
type Helm struct {
	// Path is the helm binary.
	Path string
	// RepoRoot is the working directory of every helm call, so chart paths
	// are relative to it.
	RepoRoot string
}

// FindHelm locates bin/tools/helm-<version>/helm, the version being
// helm.sh/helm/v3's in e2e/tools/helm/go.mod, exactly as the Makefile names
// it. A missing binary is an error that says how to build it, never a skip.
func FindHelm(ctx context.Context, repoRoot string) (*Helm, error) {
	paths, err := FindTools(ctx, repoRoot, "helm", "helm.sh/helm/v3", "helm")
	if err != nil {
		return nil, err
	}
	return &Helm{Path: paths[0], RepoRoot: repoRoot}, nil
}

// FindTools locates binaries that `make tools` builds from the tools module
// e2e/tools/<toolsModule>: bin/tools/<name>-<version>/<name> for each name,
// the version being module's in that go.mod, as the Makefile names them.
// A missing binary is an error that says how to build it.
func FindTools(ctx context.Context, repoRoot, toolsModule, module string, names ...string) ([]string, error) {
	dir := filepath.Join("e2e", "tools", toolsModule)
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", module)
	cmd.Dir = filepath.Join(repoRoot, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading the %s version from %s/go.mod: %w: %s", module, dir, err, strings.TrimSpace(stderr.String()))
	}
	version := strings.TrimSpace(string(out))
	if version == "" {
		return nil, fmt.Errorf("%s/go.mod does not require %s", dir, module)
	}
	var paths []string
	for _, name := range names {
		path := filepath.Join(repoRoot, "bin", "tools", name+"-"+version, name)
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s %s is missing at %s (run `make tools prometheus`): %w", name, version, path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// Run runs helm with args and returns its standard output. The error
// carries helm's standard error, which names the template or value at
// fault.
func (h *Helm) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.Path, args...)
	cmd.Dir = h.RepoRoot
	// An isolated home keeps a developer's helm repositories and plugins
	// out of the result.
	home, err := os.MkdirTemp("", "meshtrust-helm-")
	if err != nil {
		return nil, fmt.Errorf("creating a helm home: %w", err)
	}
	defer os.RemoveAll(home)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Template renders the chart as release name in namespace with the given
// --set values (key=value) and returns the YAML stream.
func (h *Helm) Template(ctx context.Context, release, namespace string, set []string, extra ...string) ([]byte, error) {
	args := []string{"template", release, ChartDir, "--namespace", namespace}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return h.Run(ctx, append(args, extra...)...)
}
