// Package app builds the meshtrust command tree. It is importable, so that
// tests and the demo can run `meshtrust ...` in-process with their own
// streams, environment and clock; cmd/meshtrust's main only calls Main.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshtrust/meshtrust/internal/kube"
	"github.com/meshtrust/meshtrust/internal/rotation"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
)

// Streams are the command's standard input, output and error.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Option changes how NewRootCommand's commands see the world.
type Option func(*env)

// WithGetenv replaces os.Getenv (VAULT_ADDR, VAULT_TOKEN, KUBECONFIG, HOME...).
func WithGetenv(f func(string) string) Option { return func(e *env) { e.getenv = f } }

// WithEnv sets environment variables on top of the process environment.
func WithEnv(vars map[string]string) Option {
	return func(e *env) {
		prev := e.getenv
		e.getenv = func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			return prev(k)
		}
	}
}

// WithNow replaces the clock.
func WithNow(f func() time.Time) Option { return func(e *env) { e.now = f } }

// env is what the commands read from outside their flags.
type env struct {
	streams Streams
	getenv  func(string) string
	now     func() time.Time

	output     string
	kubeconfig string
	contexts   []string
}

func (e *env) kubeconfigSource() kube.Kubeconfig {
	return kube.Kubeconfig{Path: e.kubeconfig, Env: e.getenv("KUBECONFIG"), Home: e.getenv("HOME")}
}

func (e *env) checkOutput(allowed ...string) error {
	for _, a := range allowed {
		if e.output == a {
			return nil
		}
	}
	return fmt.Errorf("invalid --output %q: want %s", e.output, strings.Join(allowed, ", "))
}

// UnhealthyError is returned when a check ran and found something wrong; the
// command's output already says what.
type UnhealthyError struct {
	// Clusters names the unhealthy clusters; empty when only warnings failed.
	Clusters []string
	// Summary is the verdict line.
	Summary string
}

func (e *UnhealthyError) Error() string { return e.Summary }

// NewRootCommand returns the meshtrust command tree writing to s.
func NewRootCommand(s Streams, opts ...Option) *cobra.Command {
	e := &env{streams: s, getenv: os.Getenv, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	root := &cobra.Command{
		Use:   "meshtrust",
		Short: "Shared Istio trust across clusters, rooted in Vault",
		Long: `meshtrust sets up and checks shared trust for a multi-cluster Istio mesh whose
root CA lives in HashiCorp Vault's PKI engine: bootstrap the root, enrol each
cluster with a policy pinned to its own trust domain, and verify that every
cluster's cacerts chains to the roots all the others trust.

Vault is reached through VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE and
VAULT_CACERT; clusters through KUBECONFIG or --kubeconfig and --context.`,
		Example: `  meshtrust vault bootstrap
  meshtrust vault enroll --cluster east --trust-domain east.mesh --context east | kubectl --context east apply -f -
  meshtrust status --context east --context west`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	pf := root.PersistentFlags()
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table, json or yaml")
	pf.StringVar(&e.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)")
	pf.StringArrayVar(&e.contexts, "context", nil, "kube context; repeat for several clusters (default: the current context)")
	root.AddCommand(newVaultCommand(e), newStatusCommand(e))
	return root
}

// Main runs the command line args and returns the process exit code: 0 when
// everything checked is healthy, 1 when a check ran and found a problem
// (including a retire-root refused because something still needs the root,
// a rotate-root stopped by a cluster that is unreachable or lags, and an
// unenroll refused because something of the cluster would remain), 2
// when the command could not do its job (bad input, Vault or a cluster
// unreachable). Errors are printed as one line on s.ErrOut.
func Main(ctx context.Context, args []string, s Streams, opts ...Option) int {
	root := NewRootCommand(s, opts...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(s.ErrOut, "meshtrust: "+oneLine(err.Error()))
	var uh *UnhealthyError
	var refused *vaultadmin.RefusedError
	var blocked *rotation.BlockedError
	var unenrollRefused *vaultadmin.UnenrollRefusedError
	if errors.As(err, &uh) || errors.As(err, &refused) || errors.As(err, &blocked) || errors.As(err, &unenrollRefused) {
		return 1
	}
	return 2
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
