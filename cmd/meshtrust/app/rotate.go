package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshtrust/meshtrust/internal/rotation"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// killHookEnv makes rotate-root SIGKILL itself at a step boundary
// ("after:N") or inside a step ("mid:N"; after it, for a step that writes
// once), N counting this run's steps from 1: the kill-and-resume test's
// deterministic stop. Unset in production.
const killHookEnv = "MESHTRUST_ROTATE_TEST_KILL"

type rotateFlags struct {
	o             rotation.Options
	allEnrolled   bool
	withoutIstiod []string
}

func newRotateRootCommand(e *env, vf *vaultFlags) *cobra.Command {
	f := &rotateFlags{}
	o := &f.o
	cmd := &cobra.Command{
		Use:   "rotate-root --to NEW --context A --context B ...",
		Short: "Rotate the shared root across every enrolled cluster, with no downtime; resumable, verified, reversible",
		Long: `Takes every cluster from root --from (A) to root --to (B), one verified phase at a
time, never starting a phase before every cluster shows the previous one:

  1 root-added           B generated inside Vault (as vault bootstrap does), not the default
  2 both-trusted         each cluster renewed: its cacerts root-cert.pem and the
                         istio-ca-root-cert istiod publishes hold A and B
  3 intermediates-moved  one cluster at a time: its Vault policy signs only under B, its
                         VaultClusterIssuer's spec.pki.issuerRef names B, its intermediate
                         renewed; cacerts' cert-chain.pem is signed by B, both roots trusted
  4 default-switched     B is the mount's default issuer
  5 old-root-dropped     after --old-root-wait (at least --workload-cert-ttl) from the last
                         move: A's issuer deleted (as vault retire-root does; its key kept
                         unless --delete-key) and every cluster renewed, so no ca.crt holds A
  6 old-root-retired     the syncer drops A from root-cert.pem at the end of the
                         Certificate's meshtrust.io/root-grace, and istiod publishes that

There is no state file. Each run reads Vault and every cluster, works out the phase and
continues from there, so after a stop or a crash the same command carries on. The time
each cluster moved to B is recorded on its Certificate (annotation meshtrust.io/root-rotation),
which meshtrust status shows as the cluster's rotation phase.

A cluster that cannot be read, or does not reach a step's state within --step-timeout,
stops the run before anything of a later phase, names the cluster and exits 1.

With CRLs on (meshtrust's controllers carry ca-crl.pem), a root counts as trusted by a
cluster only once its ca-crl.pem and istiod's istio-ca-crl hold that root's CRL too, as a
proxy checking CRLs needs. Before each step that renews a cluster, every other cluster's
issuer is asked to refresh its CRLs (annotation meshtrust.io/crl-refresh); one that does
not answer within 30s would never carry the renewed intermediate's CRL, and its proxies
would refuse that cluster's workloads, so the run stops there, naming it, changing nothing.
The syncer holds each new intermediate back until its CRL has reached the other clusters
(--syncer-crl-propagation-delay): the step waits for that instead of renewing again.

--rollback returns the fleet to A from any phase before A is dropped: A the default again,
each cluster's policy, issuerRef and intermediate back to A, B's issuer deleted and every
cluster renewed (the syncer keeps B in root-cert.pem for its root grace, for workload
certificates issued under B meanwhile).

What the command verifies is what a kubeconfig can read: each cluster's cacerts (its
roots and the root its intermediate chains to), cert-manager's Secret, and the
istio-ca-root-cert ConfigMap istiod writes in istio-system once it has loaded a
root-cert.pem. Which intermediate istiod signs with is not visible through the API server.

--dry-run prints the phase of each cluster and the remaining steps.`,
		Example: `  meshtrust vault rotate-root --to meshtrust-root-2 --context east --context west --dry-run
  meshtrust vault rotate-root --to meshtrust-root-2 --context east --context west --old-root-wait 25h
  meshtrust vault rotate-root --to meshtrust-root-2 --all-enrolled
  meshtrust vault rotate-root --to meshtrust-root-2 --context east --context west --rollback`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRotate(cmd.Context(), e, vf, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Mount, "mount", vaultcontract.DefaultMount, "path of the PKI secrets engine")
	fl.StringVar(&o.From, "from", "meshtrust-root", "the root issuer the fleet leaves")
	fl.StringVar(&o.To, "to", "", "the root issuer the fleet moves to; generated inside Vault if absent (required)")
	fl.StringVar(&o.NewRoot.CommonName, "common-name", "", `common name of the new root (default "meshtrust root CA (<to>)")`)
	fl.StringVar(&o.NewRoot.KeyType, "key-type", "ec", "new root key type: ec, rsa or ed25519")
	fl.IntVar(&o.NewRoot.KeyBits, "key-bits", 0, "new root key size (default 256 for ec, 2048 for rsa)")
	fl.DurationVar(&o.NewRoot.TTL, "ttl", 87600*time.Hour, "lifetime of the new root")
	fl.DurationVar(&o.WorkloadCertTTL, "workload-cert-ttl", 24*time.Hour, "lifetime of the workload certificates istiod issues (its DEFAULT_WORKLOAD_CERT_TTL)")
	fl.DurationVar(&o.Wait, "old-root-wait", 25*time.Hour, "how long the old root stays in every bundle after the last cluster moved; at least --workload-cert-ttl")
	fl.DurationVar(&o.RootsCacheTTL, "issuer-roots-cache-ttl", time.Minute, "the controllers' --issuer-roots-cache-ttl: a renewal within it of a root change may repeat")
	fl.DurationVar(&o.StepTimeout, "step-timeout", 10*time.Minute, "how long one cluster's step (renewal, sync, istiod's reload) may take before the cluster counts as lagging; more than the controllers' --syncer-crl-propagation-delay (5m), for which the syncer holds each new intermediate back")
	fl.DurationVar(&o.Poll, "poll-interval", time.Second, "interval between reads while waiting")
	fl.BoolVar(&o.Rollback, "rollback", false, "return the fleet to --from (before --from is dropped)")
	fl.BoolVar(&o.DeleteKey, "delete-key", false, "also delete the key of the root issuer the rotation deletes")
	fl.BoolVar(&f.allEnrolled, "all-enrolled", false, "rotate every cluster with a policy meshtrust-<cluster> signing under --from or --to, each through the kube context named <cluster>")
	fl.StringArrayVar(&f.withoutIstiod, "without-istiod", nil, "kube context of a cluster that runs no istiod yet: its istio-ca-root-cert is not checked (repeatable)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func runRotate(ctx context.Context, e *env, vf *vaultFlags, f *rotateFlags) error {
	if err := e.checkOutput("table", "json", "yaml"); err != nil {
		return err
	}
	o := f.o
	if o.NewRoot.CommonName == "" {
		o.NewRoot.CommonName = "meshtrust root CA (" + o.To + ")"
	}
	o.Now = e.now
	if err := o.Validate(); err != nil {
		return err
	}
	if f.allEnrolled && len(e.contexts) > 0 {
		return fmt.Errorf("--all-enrolled and --context exclude each other")
	}
	if !f.allEnrolled && len(e.contexts) == 0 {
		return fmt.Errorf("name every enrolled cluster with --context, or pass --all-enrolled: a cluster left out would stop trusting the others")
	}
	c, version, err := vf.connect(ctx, e)
	if err != nil {
		return err
	}
	contexts := e.contexts
	if f.allEnrolled {
		if contexts, err = rotation.EnrolledClusters(ctx, c, o.Mount, o.From, o.To); err != nil {
			return err
		}
	}
	kc := e.kubeconfigSource()
	if _, err := kc.Resolve(contexts); err != nil {
		if f.allEnrolled {
			return fmt.Errorf("--all-enrolled found clusters %s in Vault, but: %w", strings.Join(contexts, ", "), err)
		}
		return err
	}
	skip := map[string]bool{}
	for _, n := range f.withoutIstiod {
		skip[n] = true
	}
	var clusters []rotation.Cluster
	for _, name := range contexts {
		cfg, err := kc.RESTConfig(name)
		if err != nil {
			return err
		}
		clusters = append(clusters, rotation.Cluster{Context: name, Config: cfg, WithoutIstiod: skip[name]})
	}
	errOut := e.streams.ErrOut
	o.Progress = func(ev rotation.Event) { printEvent(errOut, ev, e.now()) }
	o.Hook = killHook(e.getenv(killHookEnv))
	fleet, err := rotation.New(o, c, clusters)
	if err != nil {
		return err
	}
	header := fmt.Sprintf("Vault %s (%s), mount %s/: rotate-root %s -> %s, %d cluster(s)", c.Addr, version, o.Mount, o.From, o.To, len(clusters))
	if o.Rollback {
		header = fmt.Sprintf("Vault %s (%s), mount %s/: rotate-root --rollback to %s (from %s), %d cluster(s)", c.Addr, version, o.Mount, o.From, o.To, len(clusters))
	}
	if vf.dryRun {
		plan, err := fleet.Plan(ctx)
		if err != nil {
			return err
		}
		return printRotatePlan(e.streams.Out, e.output, header, contexts, plan)
	}
	fmt.Fprintln(errOut, header)
	res, err := fleet.Run(ctx)
	if err != nil {
		return err
	}
	if e.output != "table" {
		return printStructured(e.streams.Out, e.output, map[string]any{"phase": res.Phase, "phaseName": res.Phase.String(), "steps": res.Steps, "rollback": o.Rollback})
	}
	if o.Rollback {
		fmt.Fprintf(e.streams.Out, "Fleet rolled back to %s (%d step(s) this run).\n", o.From, res.Steps)
		return nil
	}
	fmt.Fprintf(e.streams.Out, "Fleet at phase %s (%d step(s) this run).\n", res.Phase.Label(), res.Steps)
	return nil
}

// printEvent is one progress line: the time, the phase, the cluster and
// the wait.
func printEvent(w io.Writer, ev rotation.Event, now time.Time) {
	phase := "phase " + ev.Phase.Label()
	if ev.Rollback {
		phase = "rollback"
	}
	where := "vault"
	if ev.Cluster != "" {
		where = "cluster " + ev.Cluster
	}
	line := fmt.Sprintf("%s [%s] %s: %s", now.UTC().Format("15:04:05"), phase, where, ev.Message)
	if !ev.Until.IsZero() {
		line += fmt.Sprintf(" (until %s, %s from now)", ev.Until.UTC().Format(time.RFC3339), vaultadmin.Dur(ev.Until.Sub(now).Round(time.Second)))
	}
	fmt.Fprintln(w, line)
}

func printRotatePlan(w io.Writer, format, header string, contexts []string, p *rotation.Plan) error {
	switch format {
	case "json", "yaml":
		return printStructured(w, format, p)
	}
	fmt.Fprintf(w, "%s: rotate-root plan (dry run, nothing changed)\n", header)
	fmt.Fprintf(w, "Fleet at phase %s\n", p.Phase.Label())
	for _, c := range contexts {
		fmt.Fprintf(w, "  cluster %s: %s\n", c, p.Clusters[c].Label())
	}
	if p.Blocked != "" {
		fmt.Fprintf(w, "Blocked: %s\n", p.Blocked)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tCLUSTER\tSYSTEM\tSTEP\tBEFORE\tAFTER")
	for _, s := range p.Steps {
		cluster := s.Cluster
		if cluster == "" {
			cluster = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Phase.Label(), cluster, s.System, s.Name, dashIfEmpty(s.Before), s.After)
	}
	tw.Flush()
	if len(p.Steps) == 0 {
		fmt.Fprintln(w, "Nothing left to do.")
	} else {
		fmt.Fprintf(w, "Plan: %d step(s). Run again without --dry-run to take them.\n", len(p.Steps))
	}
	return nil
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// killHook reads killHookEnv; nil when it is unset or malformed.
func killHook(spec string) func(rotation.Point) {
	where, n, ok := strings.Cut(spec, ":")
	step, err := strconv.Atoi(n)
	if !ok || err != nil || (where != "after" && where != "mid") {
		return nil
	}
	return func(p rotation.Point) {
		if p.Step == step && (where == "mid" || !p.Mid) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}
