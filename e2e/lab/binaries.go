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
// read from the go.mod of the tools module that builds it (e2e/tools unless
// ToolsModule says otherwise), so the Makefile and the lab never disagree.
type Tool struct {
	Name   string
	Module string
	// ToolsModule is the tools module's directory under the repository
	// root; empty means e2e/tools.
	ToolsModule string
}

var (
	ToolVault         = Tool{Name: "vault", Module: "github.com/hashicorp/vault"}
	ToolKubeAPIServer = Tool{Name: "kube-apiserver", Module: "k8s.io/kubernetes"}
	ToolEtcd          = Tool{Name: "etcd", Module: "go.etcd.io/etcd/server/v3"}
	// ToolIstiod is pilot-discovery, built by e2e/tools/istio, which also
	// supplies Istio's CRDs.
	ToolIstiod = Tool{Name: "istiod", Module: "istio.io/istio", ToolsModule: "e2e/tools/istio"}
)

func (t Tool) toolsModule() string {
	if t.ToolsModule == "" {
		return "e2e/tools"
	}
	return t.ToolsModule
}

// Binaries locates the lab's tool binaries under bin/tools.
type Binaries struct {
	root string

	mu      sync.Mutex
	modules map[Tool]moduleInfo
}

type moduleInfo struct{ version, dir string }

// NewBinaries returns a locator rooted at the repository root.
func NewBinaries(repoRoot string) *Binaries {
	return &Binaries{root: repoRoot}
}

// Path returns the path of tool's binary, or an error that says how to build
// it. A missing binary is an error, never a reason to skip.
func (b *Binaries) Path(t Tool) (string, error) {
	m, err := b.module(t)
	if err != nil {
		return "", err
	}
	path := filepath.Join(b.root, "bin", "tools", t.Name+"-"+m.version, t.Name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("lab binary %s %s is missing at %s (run `make tools`): %w", t.Name, m.version, path, err)
	}
	return path, nil
}

// ModuleDir returns the directory of tool's module in the module cache, as
// the tools module that builds it resolves it.
func (b *Binaries) ModuleDir(t Tool) (string, error) {
	m, err := b.module(t)
	if err != nil {
		return "", err
	}
	if m.dir == "" {
		return "", fmt.Errorf("module %s %s is not in the module cache (run `make tools`)", t.Module, m.version)
	}
	return m.dir, nil
}

func (b *Binaries) module(t Tool) (moduleInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.modules[t]; ok {
		return m, nil
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", t.Module)
	cmd.Dir = filepath.Join(b.root, t.toolsModule())
	out, err := cmd.Output()
	if err != nil {
		return moduleInfo{}, fmt.Errorf("reading the version of %s from %s/go.mod: %w", t.Module, t.toolsModule(), err)
	}
	version, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if version == "" {
		return moduleInfo{}, fmt.Errorf("module %s is not required by %s/go.mod", t.Module, t.toolsModule())
	}
	if b.modules == nil {
		b.modules = map[Tool]moduleInfo{}
	}
	m := moduleInfo{version: version, dir: dir}
	b.modules[t] = m
	return m, nil
}
