package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Options describes a lab.
type Options struct {
	// Clusters names the clusters to start. Default: one cluster, "kind1".
	Clusters []string
	// Vault chooses how Vault runs. Default: VaultDev.
	Vault VaultMode
	// ExtraCertManagerControllers adds cert-manager controllers to the
	// default set, e.g. "certificaterequests-issuer-vault".
	ExtraCertManagerControllers []string
	// NoCertManager runs no cert-manager controllers (the CRDs are still
	// installed).
	NoCertManager bool
	// Istiod runs a real istiod in every cluster (Istiod), with Istio's
	// CRDs installed. Each cluster's trust domain is its name, and the
	// other clusters' names are its trustDomainAliases.
	Istiod bool
	// IstiodClusters, when positive, limits Istiod to the first that many
	// clusters; the others run none (a fleet too large for an istiod each).
	IstiodClusters int
	// IssuanceBackoff is cert-manager's
	// --certificate-request-minimum-backoff-duration: how long a
	// Certificate waits after a failed issuance. Zero is cert-manager's
	// default, an hour. Tests of meshtrust rather than of cert-manager set
	// it short, so that one failed issuance (a race inside cert-manager,
	// say) costs seconds, not the test.
	IssuanceBackoff time.Duration
	// Dir holds logs and data. Default: a new temporary directory, removed
	// by Stop unless KeepDir is set.
	Dir string
	// KeepDir keeps Dir after Stop, e.g. for logs of a failed test.
	KeepDir bool
}

// KeepEnv, when set to anything, makes New keep every lab's directory (logs
// and data), not only a failed test's.
const KeepEnv = "MESHTRUST_LAB_KEEP"

// Lab is a running lab.
type Lab struct {
	// Dir holds every component's log and data.
	Dir string
	// Vault is nil when Options.Vault is VaultNone.
	Vault *Vault
	// Clusters in the order of Options.Clusters.
	Clusters []*Cluster
	// Timings records how long each component took to start.
	Timings []Timing

	removeDir bool
	stopOnce  sync.Once
	stopErr   error
}

// Timing is how long one component took to start.
type Timing struct {
	Component string
	Address   string
	Took      time.Duration
}

// Cluster returns the cluster with the given name, or nil.
func (l *Lab) Cluster(name string) *Cluster {
	for _, c := range l.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// New starts a lab for a test, stops it when the test ends, and on failure
// prints where the logs are and keeps them.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if os.Getenv(KeepEnv) != "" {
		opts.KeepDir = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() || opts.KeepDir {
			l.KeepDir()
			t.Logf("lab logs kept in %s:\n%s", l.Dir, strings.Join(l.LogPaths(), "\n"))
		}
		if err := l.Stop(); err != nil {
			t.Errorf("stopping lab: %v", err)
		}
	})
	return l
}

// Start starts Vault and the clusters. On error, everything already
// started is stopped again.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bins := NewBinaries(root)
	l := &Lab{Dir: opts.Dir}
	if l.Dir == "" {
		if l.Dir, err = os.MkdirTemp("", "meshtrust-lab-"); err != nil {
			return nil, fmt.Errorf("creating lab directory: %w", err)
		}
		l.removeDir = !opts.KeepDir
	}
	if err := l.start(ctx, opts, root, bins); err != nil {
		// Keep the logs: they say why.
		l.removeDir = false
		return nil, fmt.Errorf("%w (logs in %s)", errors.Join(err, l.Stop()), l.Dir)
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context, opts Options, root string, bins *Binaries) error {
	clusters := opts.Clusters
	if len(clusters) == 0 {
		clusters = []string{"kind1"}
	}
	apiServer, err := bins.Path(ToolKubeAPIServer)
	if err != nil {
		return err
	}
	etcd, err := bins.Path(ToolEtcd)
	if err != nil {
		return err
	}
	crdDirs, err := crdDirectories(root)
	if err != nil {
		return err
	}
	var istiod string
	if opts.Istiod {
		if istiod, err = bins.Path(ToolIstiod); err != nil {
			return err
		}
		crds, err := istioCRDs(bins)
		if err != nil {
			return err
		}
		crdDirs = append(crdDirs, crds)
	}
	var controllers []string
	if !opts.NoCertManager {
		controllers = append(DefaultCertManagerControllers(), opts.ExtraCertManagerControllers...)
	}

	if opts.Vault != VaultNone {
		binary, err := bins.Path(ToolVault)
		if err != nil {
			return err
		}
		began := time.Now()
		if l.Vault, err = newVault(ctx, binary, l.Dir, opts.Vault); err != nil {
			return err
		}
		l.Timings = append(l.Timings, Timing{Component: "vault", Address: l.Vault.Addr, Took: time.Since(began)})
	}

	// Clusters start one after another: on two cores, parallel starts are
	// no faster and make start-up timeouts likelier.
	for i, name := range clusters {
		began := time.Now()
		c, err := startCluster(ctx, clusterSpec{
			name:        name,
			dir:         filepath.Join(l.Dir, name),
			apiServer:   apiServer,
			etcd:        etcd,
			crdDirs:     crdDirs,
			controllers: controllers,
			backoff:     opts.IssuanceBackoff,
		})
		if err != nil {
			return err
		}
		l.Clusters = append(l.Clusters, c)
		l.Timings = append(l.Timings, Timing{Component: "cluster " + name, Address: c.Host, Took: time.Since(began)})
		if !opts.Istiod || (opts.IstiodClusters > 0 && i >= opts.IstiodClusters) {
			continue
		}
		began = time.Now()
		if c.Istiod, err = startIstiod(ctx, c, istiodSpec{
			binary:      istiod,
			dir:         filepath.Join(l.Dir, name, "istiod"),
			trustDomain: name,
			aliases:     others(clusters, name),
		}); err != nil {
			return fmt.Errorf("starting istiod in cluster %s: %w", name, err)
		}
		l.Timings = append(l.Timings, Timing{Component: "istiod " + name, Address: c.Istiod.SecureGRPCAddr, Took: time.Since(began)})
	}
	return nil
}

func others(all []string, name string) []string {
	var out []string
	for _, n := range all {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

// KeepDir keeps the lab's directory after Stop, for the logs of a test that
// failed after the lab was started.
func (l *Lab) KeepDir() { l.removeDir = false }

// Stop stops every component. It is safe to call more than once.
func (l *Lab) Stop() error {
	l.stopOnce.Do(func() {
		var errs []error
		for _, c := range l.Clusters {
			errs = append(errs, c.stop())
		}
		if l.Vault != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			errs = append(errs, l.Vault.Stop(ctx))
			cancel()
		}
		if l.removeDir {
			errs = append(errs, os.RemoveAll(l.Dir))
		}
		l.stopErr = errors.Join(errs...)
	})
	return l.stopErr
}

// LogPaths lists every component's log file.
func (l *Lab) LogPaths() []string {
	var paths []string
	if l.Vault != nil {
		paths = append(paths, l.Vault.LogPath)
	}
	for _, c := range l.Clusters {
		if c.LogPath != "" {
			paths = append(paths, c.LogPath)
		}
		if c.Istiod != nil {
			paths = append(paths, c.Istiod.LogPath)
		}
	}
	return paths
}

// crdDirectories returns cert-manager's CRDs, from that module's own
// deploy/crds, and meshtrust's generated CRDs.
func crdDirectories(root string) ([]string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locating the cert-manager module for its CRDs: %w", err)
	}
	dirs := []string{filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")}
	own := filepath.Join(root, "deploy", "crds")
	if _, err := os.Stat(own); err == nil {
		dirs = append(dirs, own)
	}
	return dirs, nil
}

// istioCRDs returns Istio's CRDs, from the istio module that
// e2e/tools/istio builds istiod from.
func istioCRDs(bins *Binaries) (string, error) {
	dir, err := bins.ModuleDir(ToolIstiod)
	if err != nil {
		return "", fmt.Errorf("locating the istio module for its CRDs: %w", err)
	}
	return filepath.Join(dir, "manifests", "charts", "base", "files", "crd-all.gen.yaml"), nil
}

func newFileLogger(w io.Writer) logr.Logger {
	// cert-manager logs its decisions at V(2); a file has room for them.
	return zap.New(zap.WriteTo(w), zap.UseDevMode(false), zap.Level(zapcore.Level(-2)))
}
