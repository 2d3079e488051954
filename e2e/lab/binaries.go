package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// RepoRoot returns the meshtrust repository root: the nearest directory
// above this process's working directory whose go.mod declares the
// meshtrust module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/meshtrust/meshtrust\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding repository root: no go.mod for github.com/meshtrust/meshtrust above the working directory")
		}
		dir = parent
	}
}

// Tool names a lab binary and the module that provides it. The version is
// read from e2e/tools/go.mod, so the Makefile and the lab never disagree.
type Tool struct {
	Name   string
	Module string
}

var (
	ToolVault         = Tool{Name: "vault", Module: "github.com/hashicorp/vault"}
	ToolKubeAPIServer = Tool{Name: "kube-apiserver", Module: "k8s.io/kubernetes"}
	ToolEtcd          = Tool{Name: "etcd", Module: "go.etcd.io/etcd/server/v3"}
)

// Binaries locates the lab's tool binaries under bin/tools.
type Binaries struct {
	root string

	mu       sync.Mutex
	versions map[string]string
}

// NewBinaries returns a locator rooted at the repository root.
func NewBinaries(repoRoot string) *Binaries {
	return &Binaries{root: repoRoot}
}

// Path returns the path of tool's binary, or an error that says how to build
// it. A missing binary is an error, never a reason to skip.
func (b *Binaries) Path(t Tool) (string, error) {
	version, err := b.version(t.Module)
	if err != nil {
		return "", err
	}
	path := filepath.Join(b.root, "bin", "tools", t.Name+"-"+version, t.Name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("lab binary %s %s is missing at %s (run `make tools`): %w", t.Name, version, path, err)
	}
	return path, nil
}

func (b *Binaries) version(module string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.versions == nil {
		args := []string{"list", "-m", "-f", "{{.Path}} {{.Version}}"}
		for _, t := range []Tool{ToolVault, ToolKubeAPIServer, ToolEtcd} {
			args = append(args, t.Module)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join(b.root, "e2e", "tools")
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("reading tool versions from e2e/tools/go.mod: %w", err)
		}
		b.versions = map[string]string{}
		for _, line := range strings.Split(string(out), "\n") {
			if path, version, ok := strings.Cut(line, " "); ok {
				b.versions[path] = version
			}
		}
	}
	v, ok := b.versions[module]
	if !ok || v == "" {
		return "", fmt.Errorf("module %s is not required by e2e/tools/go.mod", module)
	}
	return v, nil
}
