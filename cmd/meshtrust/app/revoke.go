package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshtrust/meshtrust/internal/status"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// propagationFlags say where to follow a new CRL into the clusters.
type propagationFlags struct {
	wait                      time.Duration
	namespace, secret, crlNS  string
	clusterTimeout, pollEvery time.Duration
}

func (f *propagationFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVar(&f.wait, "wait", time.Minute, "how long to wait for the clusters to carry the new CRL (0: check once)")
	fl.StringVarP(&f.namespace, "namespace", "n", "istio-system", "namespace of Istio's cacerts Secret (and istiod's istio-ca-crl)")
	fl.StringVar(&f.secret, "secret", "cacerts", "name of Istio's plugged-CA Secret")
	fl.StringVar(&f.crlNS, "crl-namespace", "meshtrust-system", "namespace of the VaultClusterIssuers' CRL exchange ConfigMaps (the controllers' cluster resource namespace)")
	fl.DurationVar(&f.clusterTimeout, "cluster-timeout", 20*time.Second, "time allowed for each call to a cluster")
	f.pollEvery = 250 * time.Millisecond
}

func newRevokeCommand(e *env, vf *vaultFlags) *cobra.Command {
	o := vaultadmin.RevokeOptions{}
	pf := &propagationFlags{}
	cmd := &cobra.Command{
		Use:   "revoke --cluster NAME",
		Short: "Revoke a cluster's intermediates, and follow the CRL until every cluster carries it",
		Long: `Revokes every unexpired intermediate of --cluster in Vault (CA certificates
whose only permitted URI domain is the cluster's trust domain, read from its
enrol policy unless --trust-domain is given, and whose CN is --common-name),
then rebuilds the mount's CRLs (crl/rotate: with auto_rebuild on, as bootstrap
sets it, a revocation alone leaves the CRL as it was until the next scheduled
rebuild). The cluster stays enrolled: it can get a new intermediate, and
should, once its key is safe (cmctl renew); to take its access away too, use
unenroll --revoke.

Then, in every cluster of --context (default: every context of the
kubeconfig), it asks each VaultClusterIssuer to refresh its CRLs at once
(annotation meshtrust.io/crl-refresh), and reports which clusters carry the
new CRL, in cacerts' ca-crl.pem and in what istiod publishes (istio-ca-crl),
and which do not yet, waiting up to --wait. Proxies refuse the revoked
cluster's workloads once their istio-ca-crl carries it.

Exit code: 0 when every cluster that takes part in the CRL exchange carries
the new CRL, 1 when one still does not after --wait, 2 when the revocation
could not be made.`,
		Example: `  meshtrust vault revoke --cluster kind3
  meshtrust vault revoke --cluster east --trust-domain east.mesh --context east --context west
  meshtrust vault revoke --cluster east --dry-run -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkOutput("table", "json", "yaml"); err != nil {
				return err
			}
			if err := vaultcontract.ValidateClusterName(o.Cluster); err != nil {
				return err
			}
			o.Now = e.now()
			ctx := cmd.Context()
			c, version, err := vf.connect(ctx, e)
			if err != nil {
				return err
			}
			plan, err := vaultadmin.PlanRevoke(ctx, c, o)
			if err != nil {
				return err
			}
			w := e.streams.Out
			header := fmt.Sprintf("Vault %s (%s): cluster %s, trust domain %s", c.Addr, version, o.Cluster, plan.TrustDomain)
			if vf.dryRun {
				return printPlan(w, e.output, header, plan, &plan.Plan, fmt.Sprintf("Nothing to change: cluster %s has no unrevoked intermediate, and the CRL lists the revoked ones.", o.Cluster))
			}
			began := time.Now()
			res, err := plan.Apply(ctx)
			if err != nil {
				return err
			}
			if err := printRevoked(w, e.output, header, res, res.Steps, res.Revoked); err != nil {
				return err
			}
			if e.output == "table" {
				fmt.Fprintf(w, "Cluster %s stays enrolled: once its key is safe, renew its intermediate (cmctl renew); to take its access away, run vault unenroll --revoke.\n", o.Cluster)
			}
			return followCRL(ctx, e, c, o.Mount, pf, began)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Cluster, "cluster", "", "cluster name given to enroll")
	f.StringVar(&o.TrustDomain, "trust-domain", "", "the cluster's trust domain (default: read from its enrol policy)")
	f.StringVar(&o.CommonName, "common-name", "", `the cluster's intermediate CN (default "<cluster> istio intermediate CA")`)
	f.StringVar(&o.PolicyName, "policy-name", "", "the cluster's policy (default meshtrust-<cluster>)")
	f.StringVar(&o.Mount, "mount", vaultcontract.DefaultMount, "path of the PKI secrets engine")
	pf.add(cmd)
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

// printRevoked renders what an apply that revokes did: res as json or yaml,
// or the header, the steps and each serial revoked.
func printRevoked(w io.Writer, format, header string, res any, steps []vaultadmin.Step, revoked []string) error {
	if format != "table" {
		return printStructured(w, format, res)
	}
	fmt.Fprintln(w, header)
	printSteps(w, steps, false)
	for _, s := range revoked {
		fmt.Fprintf(w, "  revoked serial %s\n", s)
	}
	return nil
}

// followCRL reads Vault's new CRLs, asks every cluster to refresh, and
// reports which carry them, waiting up to pf.wait. began is when the
// revocation started, for the report's timing.
func followCRL(ctx context.Context, e *env, c *vaultadmin.Client, mount string, pf *propagationFlags, began time.Time) error {
	w := e.streams.ErrOut
	if e.output == "table" {
		w = e.streams.Out
	}
	ics, err := vaultadmin.FetchCRLs(ctx, c, mount, "", e.now())
	if err != nil {
		return err
	}
	want := issuedCRLs(ics)
	kc := e.kubeconfigSource()
	contexts := e.contexts
	if len(contexts) == 0 {
		if contexts, err = kc.AllContexts(); err != nil {
			fmt.Fprintf(w, "\nNo cluster reached (%v): clusters take the new CRL up within their refresh interval (--issuer-crl-refresh-interval, a minute by default).\n", err)
			return nil
		}
	} else if _, err := kc.Resolve(contexts); err != nil {
		return err
	}
	value := e.now().UTC().Format(time.RFC3339Nano)
	ps := make([]*status.Propagation, len(contexts))
	for i, name := range contexts {
		ps[i] = status.StartPropagation(ctx, kc, name, pf.crlNS, value, pf.clusterTimeout)
	}
	deadline := time.Now().Add(pf.wait)
	for {
		done := true
		for _, p := range ps {
			p.Check(ctx, pf.namespace, pf.secret, want, pf.clusterTimeout)
			done = done && p.Done()
		}
		if done || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(pf.pollEvery):
		}
	}
	return reportPropagation(w, want, ps, time.Since(began))
}

func issuedCRLs(ics []vaultadmin.IssuerCRL) []status.IssuedCRL {
	out := make([]status.IssuedCRL, len(ics))
	for i, ic := range ics {
		name := ic.Name
		if name == "" {
			name = ic.ID
		}
		out[i] = status.IssuedCRL{Name: name, Issuer: ic.Cert, CRL: ic.CRL}
	}
	return out
}

// reportPropagation prints which clusters carry the new CRL and returns an
// UnhealthyError naming those that take part but do not yet.
func reportPropagation(w io.Writer, want []status.IssuedCRL, ps []*status.Propagation, took time.Duration) error {
	var crls []string
	for _, v := range want {
		crls = append(crls, fmt.Sprintf("%s #%v (%d revoked)", v.Name, v.CRL.Number, len(v.CRL.RevokedCertificateEntries)))
	}
	fmt.Fprintf(w, "\nVault's CRLs: %s\n", strings.Join(crls, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tCACERTS ca-crl.pem\tISTIOD istio-ca-crl\tDETAIL")
	var missing []string
	for _, p := range ps {
		cacerts, istiod := "-", "-"
		if p.Participates {
			cacerts, istiod = carried(p.InCACerts), carried(p.Published)
			if !p.Done() {
				missing = append(missing, p.Context)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Context, cacerts, istiod, dashIfEmpty(p.Detail))
	}
	tw.Flush()
	if len(missing) > 0 {
		summary := fmt.Sprintf("NOT YET: revoked, but %s do(es) not carry the new CRL after %s", strings.Join(missing, ", "), took.Round(100*time.Millisecond))
		fmt.Fprintln(w, summary)
		return &UnhealthyError{Clusters: missing, Summary: summary}
	}
	fmt.Fprintf(w, "Every cluster in the CRL exchange carries the new CRL, %s after the revocation began.\n", took.Round(100*time.Millisecond))
	return nil
}

func carried(ok bool) string {
	if ok {
		return "carries it"
	}
	return "not yet"
}
