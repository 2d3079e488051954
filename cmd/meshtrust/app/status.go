package app

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshtrust/meshtrust/internal/meshconfig"
	"github.com/meshtrust/meshtrust/internal/status"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

type statusFlags struct {
	namespace, secret, exportDir, vaultMount, meshConfigMap string
	expectRoots                                             []string
	timeout                                                 time.Duration
}

func newStatusCommand(e *env) *cobra.Command {
	f := &statusFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each cluster's Istio cacerts and whether trust is shared across clusters",
		Long: `For each --context, reads Istio's cacerts Secret (either layout) and shows
whether it is present and managed by meshtrust, its layout, the intermediate's
subject, serial, expiry and URI name constraints, the SHA-256 fingerprints of
its roots, whether the chain validates (with the same validator the syncer
runs), and the Ready state of the Certificate it came from.

Then a trust matrix: does cluster X's intermediate chain to a root in cluster
Y's root bundle? Shared trust means all yes. When it is not, the cluster at
fault is the one without the --expect-root fingerprint (as vault bootstrap
prints it), or else the one outside the root set most clusters share. Two
clusters whose trust domains overlap (equal, or one under the other, as
"east.mesh" is under "mesh": crypto/x509 lets an intermediate constrained to
"mesh" sign "east.mesh" identities) are both at fault. Warnings flag roots that
differ between clusters, an intermediate inside its renewal window, and a
missing name constraint.

Istio's mesh ConfigMap (--mesh-configmap, key "mesh") is read too: a
meshConfig.trustDomain other than the intermediate's URI name constraint is a
problem naming both (istiod would sign workload certificates every peer
refuses), and the trust domain of a peer that shares trust but is missing from
meshConfig.trustDomainAliases is a warning. Without the ConfigMap nothing is
checked. A stored Vault reviewer token shows its expiry; within 30 days of it
status warns, and an expired one is a problem.

With VAULT_ADDR set, it also reads Vault's current CRLs (public endpoints, no
token needed) and warns about each cluster whose ca-crl.pem carries an older CRL
of a root it trusts; a CRL in ca-crl.pem past its nextUpdate is an error in any
case, since proxies then refuse every chain it covers. The CRL columns show
whether cacerts carries a ca-crl.pem, when its first CRL expires, and how many
serials it revokes.

Exit code: 0 when every cluster is healthy and there is no warning, 1 when
something checked is wrong (the clusters at fault are named), 2 when the check
could not run.

--export DIR writes each cluster's cacerts files to DIR/<context>/, as a
Secret volume mounts them for istiod (including the CA key, mode 0600). The
folder is replaced whole, so it holds only the Secret's current keys. Every
character of the context name outside [A-Za-z0-9._-] becomes "_"; contexts
that would share a folder are refused.`,
		Example: `  meshtrust status --context east --context west
  meshtrust status --context east --context west -o json
  meshtrust status --context east --context west --expect-root 18cec801728fcde15e3e1fc54cf1d46398c7adc6bc7a1ac5f158b98daff97e5a
  meshtrust status --context east --export /tmp/cacerts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), e, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.namespace, "namespace", "n", "istio-system", "namespace of Istio's cacerts Secret")
	fl.StringVar(&f.secret, "secret", "cacerts", "name of Istio's plugged-CA Secret")
	fl.StringVar(&f.meshConfigMap, "mesh-configmap", meshconfig.ConfigMapName, `Istio's mesh ConfigMap in --namespace, whose trustDomain and trustDomainAliases are checked ("" to skip)`)
	fl.StringVar(&f.exportDir, "export", "", "write each cluster's cacerts files to DIR/<context>/")
	fl.StringArrayVar(&f.expectRoots, "expect-root", nil, "SHA-256 fingerprint of a root every cluster must trust (as `vault bootstrap` prints it); repeatable")
	fl.DurationVar(&f.timeout, "cluster-timeout", 20*time.Second, "time allowed for reading each cluster")
	fl.StringVar(&f.vaultMount, "vault-mount", vaultcontract.DefaultMount, "PKI mount whose CRLs the clusters should carry (read when VAULT_ADDR is set)")
	return cmd
}

func runStatus(ctx context.Context, e *env, f *statusFlags) error {
	if err := e.checkOutput("table", "json", "yaml"); err != nil {
		return err
	}
	kc := e.kubeconfigSource()
	contexts, err := kc.Resolve(e.contexts)
	if err != nil {
		return err
	}
	if f.exportDir != "" {
		if err := status.CheckExportNames(contexts); err != nil {
			return err
		}
	}
	inputs := make([]status.Input, len(contexts))
	for i, name := range contexts {
		inputs[i] = status.Read(ctx, kc, name, f.namespace, f.secret, f.meshConfigMap, f.timeout)
	}
	opts := status.Options{ExpectedRoots: f.expectRoots}
	var vaultErr error
	if e.getenv("VAULT_ADDR") != "" {
		opts.VaultCRLs, vaultErr = vaultCRLs(ctx, e, f.vaultMount)
	}
	report := status.Build(inputs, e.now(), opts)
	if vaultErr != nil {
		report.Warnings = append(report.Warnings, "cannot compare with Vault's CRLs: "+vaultErr.Error())
		report.Healthy = false
	}
	if err := status.Render(e.streams.Out, report, e.output); err != nil {
		return err
	}
	if f.exportDir != "" {
		for _, in := range inputs {
			files, err := status.Export(f.exportDir, in.Context, in.Secret)
			if err != nil {
				return err
			}
			if len(files) > 0 {
				fmt.Fprintf(e.streams.ErrOut, "exported %d file(s) of %s to %s\n", len(files), in.Context, f.exportDir)
			}
		}
	}
	if !report.Healthy {
		return &UnhealthyError{Clusters: report.Unhealthy(), Summary: status.Verdict(report)}
	}
	return nil
}

// vaultCRLs reads Vault's current CRLs of mount through its public
// endpoints.
func vaultCRLs(ctx context.Context, e *env, mount string) ([]status.IssuedCRL, error) {
	c, err := vaultadmin.NewClient(vaultadmin.ConfigFromEnv(e.getenv))
	if err != nil {
		return nil, err
	}
	ics, err := vaultadmin.FetchCRLs(ctx, c, mount, "", e.now())
	if err != nil {
		return nil, err
	}
	return issuedCRLs(ics), nil
}
