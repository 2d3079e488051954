package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/internal/status"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

type vaultFlags struct {
	addr    string
	timeout time.Duration
	dryRun  bool
}

func newVaultCommand(e *env) *cobra.Command {
	vf := &vaultFlags{}
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Set up Vault: the shared root and each cluster's least-privilege access",
		Long: `Commands that write to Vault. They read VAULT_ADDR, VAULT_TOKEN (else
~/.vault-token), VAULT_NAMESPACE and VAULT_CACERT like the vault CLI, and are
idempotent: a second run changes nothing and says so.

--dry-run reads Vault (and the cluster) and prints the plan instead: every
Vault and Kubernetes change, with what is there now and what it will be, in
the order the command would make them. Nothing is written. -o json gives the
plan to change review.`,
		Example: `  export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
  meshtrust vault bootstrap
  meshtrust vault enroll --cluster east --trust-domain east.mesh --context east
  meshtrust vault revoke --cluster east
  meshtrust vault unenroll --cluster east --revoke
  meshtrust vault retire-root --issuer-name meshtrust-root
  meshtrust vault rotate-root --to meshtrust-root-2 --context east --context west
  meshtrust vault enroll --cluster east --trust-domain east.mesh --context east --dry-run -o json`,
	}
	cmd.PersistentFlags().BoolVar(&vf.dryRun, "dry-run", false, "print the plan (each Vault and Kubernetes change, before and after) and change nothing")
	cmd.PersistentFlags().StringVar(&vf.addr, "vault-addr", "", "Vault address (default: VAULT_ADDR)")
	cmd.PersistentFlags().DurationVar(&vf.timeout, "vault-timeout", 30*time.Second, "timeout of each Vault request")
	cmd.AddCommand(newBootstrapCommand(e, vf), newEnrollCommand(e, vf), newUnenrollCommand(e, vf), newRevokeCommand(e, vf), newRetireRootCommand(e, vf), newRotateRootCommand(e, vf))
	return cmd
}

// connect builds the client and runs the preflight, so that an unreachable
// or sealed Vault or a bad token gives one clear line before any step runs.
func (vf *vaultFlags) connect(ctx context.Context, e *env) (*vaultadmin.Client, string, error) {
	cfg := vaultadmin.ConfigFromEnv(e.getenv)
	if vf.addr != "" {
		cfg.Addr = vf.addr
	}
	cfg.Timeout = vf.timeout
	c, err := vaultadmin.NewClient(cfg)
	if err != nil {
		return nil, "", err
	}
	version, err := c.Preflight(ctx)
	return c, version, err
}

func newBootstrapCommand(e *env, vf *vaultFlags) *cobra.Command {
	o := vaultadmin.BootstrapOptions{}
	var importFile string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the shared root CA inside Vault's PKI engine",
		Long: `Enables the PKI engine at --mount, generates the root inside Vault
(root/generate/internal, so its key never leaves Vault), makes it the default
issuer, lowers the mount's max lease TTL to --max-intermediate-ttl (Vault cuts
every intermediate to that TTL, so no cluster can obtain a longer-lived one
whatever it asks for), and sets the issuing-certificate and CRL URLs.

The URLs are per issuer (Vault templates, Vault >= 1.13): every intermediate
names the root that signed it, <url-base>/v1/<mount>/issuer/<issuer id>/der and
.../crl/der, so after a root rotation a revoked intermediate of the old root
is on the CRL its certificate points to. <url-base> is stored once, as the
mount's config/cluster aia_path and path. It is --url-base, the address
clients outside reach Vault by. Without --url-base, URL settings the mount
already has are left as they are, whatever VAULT_ADDR this run uses; a mount
with none gets the Vault address. Pass --url-base to change them, or to
replace URLs that are not per issuer.

It also makes the mount's CRLs ones the clusters can carry: auto_rebuild on, so
Vault rebuilds each CRL --crl-rebuild-grace before it expires (without it Vault
keeps serving a CRL past its nextUpdate, and proxies refuse every chain of that
root once it expires), and enables the CRL exchange, a KV mount (meshtrust-crl/)
where each cluster publishes its own intermediates' CRLs for the others: a
proxy refuses a peer unless it has a CRL of every CA in the peer's chain.

Instead of generating, --adopt-issuer uses a root already in the mount and
--import-pem imports a root certificate and key.

A second run finds the root by --issuer-name and changes nothing. The root's
SHA-256 fingerprint and expiry are printed at the end.`,
		Example: `  meshtrust vault bootstrap
  meshtrust vault bootstrap --mount pki --common-name "Example Corp mesh root" --ttl 87600h --max-intermediate-ttl 2160h
  meshtrust vault bootstrap --key-type rsa --key-bits 4096
  meshtrust vault bootstrap --url-base https://vault.example.com:8200
  meshtrust vault bootstrap --adopt-issuer my-existing-root -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkOutput("table", "json", "yaml"); err != nil {
				return err
			}
			if importFile != "" {
				b, err := os.ReadFile(importFile)
				if err != nil {
					return fmt.Errorf("reading --import-pem: %w", err)
				}
				o.ImportPEM = b
			}
			if err := o.Validate(); err != nil {
				return err
			}
			c, version, err := vf.connect(cmd.Context(), e)
			if err != nil {
				return err
			}
			opts := o
			// Only for a mount without URL settings: the address this run
			// reaches Vault by may be a port-forward or another spelling.
			opts.DefaultURLBase = c.Addr
			plan, err := vaultadmin.PlanBootstrap(cmd.Context(), c, opts)
			if err != nil {
				return err
			}
			w := e.streams.Out
			if vf.dryRun {
				return printPlan(w, e.output, fmt.Sprintf("Vault %s (%s), mount %s/", c.Addr, version, o.Mount), plan, &plan.Plan,
					"Nothing to change: Vault is already bootstrapped.")
			}
			res, err := plan.Apply(cmd.Context())
			if err != nil {
				return err
			}
			return printBootstrap(w, e.output, c.Addr, version, o.Mount, res, e.now())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Mount, "mount", vaultcontract.DefaultMount, "path of the PKI secrets engine")
	f.StringVar(&o.IssuerName, "issuer-name", "meshtrust-root", "name of the root issuer in the mount")
	f.StringVar(&o.CommonName, "common-name", "meshtrust root CA", "common name of the root certificate")
	f.StringVar(&o.KeyType, "key-type", "ec", "root key type: ec, rsa or ed25519")
	f.IntVar(&o.KeyBits, "key-bits", 0, "root key size (default 256 for ec, 2048 for rsa)")
	f.DurationVar(&o.TTL, "ttl", 87600*time.Hour, "lifetime of the root certificate")
	f.DurationVar(&o.MaxIntermediateTTL, "max-intermediate-ttl", 2160*time.Hour, "mount max lease TTL after the root exists: the longest life any intermediate can get")
	f.StringVar(&o.URLBase, "url-base", "", "externally reachable Vault address that certificates advertise in their AIA and CRL URLs; when not given, the mount's URL settings are kept, or, if it has none, set from the Vault address")
	f.StringVar(&o.AdoptIssuer, "adopt-issuer", "", "use this existing root issuer of the mount instead of generating one")
	f.StringVar(&importFile, "import-pem", "", "import the root from this PEM file (certificate and key) instead of generating one")
	f.BoolVar(&o.SetDefault, "set-default", true, "make the root the mount's default issuer")
	f.DurationVar(&o.CRLExpiry, "crl-expiry", vaultadmin.DefaultCRLExpiry, "lifetime of each CRL Vault builds (config/crl expiry)")
	f.DurationVar(&o.CRLRebuildGrace, "crl-rebuild-grace", vaultadmin.DefaultCRLRebuildGrace, "how long before expiry Vault rebuilds a CRL (auto_rebuild_grace_period)")
	return cmd
}

func printBootstrap(w io.Writer, format, addr, version, mount string, res *vaultadmin.BootstrapResult, now time.Time) error {
	switch format {
	case "json", "yaml":
		return printStructured(w, format, res)
	}
	fmt.Fprintf(w, "Vault %s (%s), mount %s/\n", addr, version, mount)
	printSteps(w, res.Steps, false)
	r := res.Root
	fmt.Fprintf(w, "\nRoot CA\n")
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "  subject:\t%s\n", r.Subject)
	fmt.Fprintf(tw, "  issuer:\t%s (%s)\n", r.IssuerName, r.IssuerID)
	fmt.Fprintf(tw, "  key:\t%s\n", r.KeyAlgorithm)
	fmt.Fprintf(tw, "  fingerprint (SHA-256):\t%s\n", r.FingerprintSHA256)
	fmt.Fprintf(tw, "  not after:\t%s (%s left)\n", r.NotAfter.Format(time.RFC3339), status.FormatDuration(r.NotAfter.Sub(now)))
	tw.Flush()
	fmt.Fprintln(w)
	if res.Changed {
		fmt.Fprintf(w, "Bootstrapped: %d change(s) made.\n", res.Changes())
	} else {
		fmt.Fprintln(w, "Nothing changed: Vault was already bootstrapped.")
	}
	return nil
}

// printSteps writes one line per step; a plan's steps that change
// something also get their before and after.
func printSteps(w io.Writer, steps []vaultadmin.Step, plan bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range steps {
		mark := "unchanged"
		switch {
		case s.Changed && plan:
			mark = "WILL CHANGE"
		case s.Changed:
			mark = "CHANGED"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, mark, s.Detail)
		if plan && s.Changed {
			fmt.Fprintf(tw, "  \t  %s\tbefore: %s\n", s.System, s.Before)
			fmt.Fprintf(tw, "  \t\tafter:  %s\n", s.After)
		}
	}
	tw.Flush()
}

// printPlan renders a dry run: v in json or yaml, else the header, the
// steps with before and after, and a verdict.
func printPlan(w io.Writer, format, header string, v any, p *vaultadmin.Plan, nothing string) error {
	switch format {
	case "json", "yaml":
		return printStructured(w, format, v)
	}
	fmt.Fprintf(w, "%s: %s plan (dry run, nothing changed)\n", header, p.Operation)
	printSteps(w, p.Steps, true)
	if p.Changed {
		fmt.Fprintf(w, "Plan: %d change(s). Run again without --dry-run to make them.\n", p.Changes())
	} else {
		fmt.Fprintln(w, nothing)
	}
	return nil
}

func printStructured(w io.Writer, format string, v any) error {
	var b []byte
	var err error
	if format == "json" {
		b, err = json.MarshalIndent(v, "", "  ")
		b = append(b, '\n')
	} else {
		b, err = yaml.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("rendering %s: %w", format, err)
	}
	_, err = w.Write(b)
	return err
}

type enrollFlags struct {
	o                       vaultadmin.EnrollOptions
	authKind                string
	kubeCAFile, reviewerJWT string
	caBundleFile            string
}

func newEnrollCommand(e *env, vf *vaultFlags) *cobra.Command {
	f := &enrollFlags{}
	cmd := &cobra.Command{
		Use:   "enroll --cluster NAME --trust-domain DOMAIN",
		Short: "Let one cluster sign intermediates for its own trust domain only",
		Long: `Creates the cluster's Vault auth and a policy that lets it sign intermediate
CAs only for its own trust domain, then prints the manifests to apply in that
cluster: a VaultClusterIssuer and a cert-manager Certificate opted in to the
syncer (annotation meshtrust.io/istio-cacerts: "true").

The policy allows "update" on <mount>/issuer/<ref>/sign-intermediate and pins,
through required_parameters and allowed_parameters, permitted_uri_domains to
exactly the trust domain, max_path_length to 0 and the common name to
--common-name; every other parameter is refused. It also allows "read" on the
issuer, for the issuer's health check.

Auth is, by default, a kubernetes auth mount per cluster (auth/kubernetes-<cluster>)
configured with the cluster's API server URL and CA from --context and a
token-reviewer ServiceAccount token minted there (--reviewer-name, bound to
system:auth-delegator), plus a role bound to the controller's ServiceAccount.
Vault needs that stored token: the controller's own login token is bound to
Vault's audience, so the API server would not accept it to call TokenReview.
enroll records the token's expiry on the reviewer ServiceAccount; status shows
it and warns 30 days before it, and enroll mints a new one from then on
(--refresh-reviewer-token: at once). The mount is created with the description
"meshtrust: cluster <name>"; enroll refuses to reconfigure an existing mount
without it, and unenroll disables only such a mount. With --auth approle, a role in the AppRole mount;
its secret ID goes into a Secret in the cluster (--context) or into
--secret-id-file, and is never printed.

Manifests go to standard output, progress to standard error.`,
		Example: `  meshtrust vault enroll --cluster east --trust-domain east.mesh --context east \
    | kubectl --context east apply -f -
  meshtrust vault enroll --cluster west --trust-domain west.mesh --auth approle --context west
  meshtrust vault enroll --cluster east --trust-domain east.mesh \
    --kubernetes-host https://east.example.com:6443 --kubernetes-ca-file east-ca.pem --reviewer-jwt-file reviewer.jwt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEnroll(cmd.Context(), e, vf, f) },
	}
	fl := cmd.Flags()
	o := &f.o
	fl.StringVar(&o.Cluster, "cluster", "", "cluster name (a DNS label); names the policy, role and auth mount")
	fl.StringVar(&o.TrustDomain, "trust-domain", "", "the cluster's SPIFFE trust domain, a bare host such as east.mesh")
	fl.StringVar(&o.Mount, "mount", vaultcontract.DefaultMount, "path of the PKI secrets engine")
	fl.StringVar(&o.IssuerRef, "issuer-ref", "meshtrust-root", "Vault issuer that signs the intermediates")
	fl.StringVar(&o.CommonName, "common-name", "", `the only common name the cluster may request (default "<cluster> istio intermediate CA")`)
	fl.StringVar(&o.PolicyName, "policy-name", "", "Vault policy name (default meshtrust-<cluster>)")
	fl.StringVar(&f.authKind, "auth", "kubernetes", "auth method: kubernetes or approle")
	fl.StringVar(&o.AuthMount, "auth-mount", "", "auth mount path without auth/ (default kubernetes-<cluster>, or approle)")
	fl.StringVar(&o.Role, "role", "", "role name in the auth mount (default meshtrust-<cluster>)")
	fl.DurationVar(&o.TokenTTL, "token-ttl", 20*time.Minute, "TTL of tokens the cluster gets at login")
	fl.DurationVar(&o.TokenMaxTTL, "token-max-ttl", time.Hour, "max TTL of tokens the cluster gets at login")
	fl.StringVar(&o.Kubernetes.Host, "kubernetes-host", "", "cluster API server URL as Vault reaches it (default: from --context)")
	fl.StringVar(&f.kubeCAFile, "kubernetes-ca-file", "", "PEM CA of the API server (default: from --context)")
	fl.StringVar(&f.reviewerJWT, "reviewer-jwt-file", "", "token-reviewer JWT (default: minted in the cluster through --context)")
	fl.StringVar(&o.Kubernetes.ReviewerNamespace, "reviewer-namespace", "kube-system", "namespace of the token-reviewer ServiceAccount")
	fl.StringVar(&o.Kubernetes.ReviewerName, "reviewer-name", "meshtrust-vault-reviewer", "name of the token-reviewer ServiceAccount")
	fl.DurationVar(&o.Kubernetes.ReviewerTTL, "reviewer-token-ttl", 8760*time.Hour, "lifetime asked for a minted reviewer token (the API server may cap it)")
	fl.BoolVar(&o.Kubernetes.RefreshReviewer, "refresh-reviewer-token", false, "mint a new reviewer token even if the stored one is not yet within 30 days of its expiry")
	fl.StringVar(&o.Kubernetes.ServiceAccount, "service-account", "meshtrust-controller", "the controller's ServiceAccount")
	fl.StringVar(&o.Kubernetes.Namespace, "service-account-namespace", "meshtrust-system", "the controller's namespace (the cluster resource namespace)")
	fl.StringVar(&o.Kubernetes.Audience, "audience", "", `audience of the controller's token (default "vault://<cluster-issuer-name>", the issuer's default)`)
	fl.DurationVar(&o.AppRole.SecretIDTTL, "secret-id-ttl", 0, "AppRole secret ID lifetime (0: no expiry)")
	fl.StringVar(&o.AppRole.SecretNamespace, "secret-namespace", "meshtrust-system", "namespace of the AppRole secret-ID Secret (the cluster resource namespace)")
	fl.StringVar(&o.AppRole.SecretName, "secret-name", "meshtrust-vault-approle", "name of the AppRole secret-ID Secret")
	fl.StringVar(&o.AppRole.SecretIDFile, "secret-id-file", "", "write an AppRole secret ID to this file (mode 0600) instead of a Secret; kept while Vault accepts it")
	fl.StringVar(&o.Manifests.Server, "server", "", "Vault address as the cluster reaches it (default: the Vault address)")
	fl.StringVar(&f.caBundleFile, "ca-bundle-file", "", "PEM CA the cluster uses to verify Vault's TLS (default: VAULT_CACERT)")
	fl.StringVar(&o.Manifests.ClusterIssuerName, "cluster-issuer-name", "meshtrust-vault", "name of the VaultClusterIssuer")
	fl.StringVar(&o.Manifests.CertificateName, "certificate-name", "istio-ca", "name of the intermediate's Certificate")
	fl.StringVar(&o.Manifests.CertificateNamespace, "certificate-namespace", "istio-system", "namespace of the intermediate's Certificate")
	fl.StringVar(&o.Manifests.SecretName, "certificate-secret", "meshtrust-istio-ca", "Secret cert-manager writes the intermediate to")
	fl.DurationVar(&o.Manifests.Duration, "duration", 720*time.Hour, "intermediate lifetime (at most the mount's max lease TTL)")
	fl.DurationVar(&o.Manifests.RenewBefore, "renew-before", 240*time.Hour, "renew the intermediate this long before it expires")
	return cmd
}

func runEnroll(ctx context.Context, e *env, vf *vaultFlags, f *enrollFlags) error {
	if err := e.checkOutput("table", "yaml", "json"); err != nil {
		return err
	}
	o := &f.o
	o.Auth, o.Now = vaultadmin.AuthKind(f.authKind), e.now()
	o.Manifests.VaultNamespace = e.getenv("VAULT_NAMESPACE")
	if len(e.contexts) > 1 {
		return fmt.Errorf("enroll takes one --context, got %d", len(e.contexts))
	}
	if len(e.contexts) == 1 {
		kc := e.kubeconfigSource()
		if _, err := kc.Resolve(e.contexts); err != nil {
			return err
		}
		cfg, err := kc.RESTConfig(e.contexts[0])
		if err != nil {
			return err
		}
		o.Kube = cfg
	}
	if err := f.readFiles(e); err != nil {
		return err
	}
	o.Default()
	if err := o.Validate(); err != nil {
		return err
	}
	c, version, err := vf.connect(ctx, e)
	if err != nil {
		return err
	}
	plan, err := vaultadmin.PlanEnroll(ctx, c, *o)
	if err != nil {
		return err
	}
	header := fmt.Sprintf("Vault %s (%s): cluster %s, trust domain %s", c.Addr, version, o.Cluster, o.TrustDomain)
	if vf.dryRun {
		return printPlan(e.streams.Out, e.output, header, plan, &plan.Plan, fmt.Sprintf("Nothing to change: cluster %s is already enrolled.", o.Cluster))
	}
	res, err := plan.Apply(ctx)
	if err != nil {
		return err
	}
	errOut := e.streams.ErrOut
	fmt.Fprintln(errOut, header)
	printSteps(errOut, res.Steps, false)
	if res.Changed {
		fmt.Fprintf(errOut, "Enrolled: %d change(s) made. Apply the manifests below in cluster %s.\n", res.Changes(), o.Cluster)
	} else {
		fmt.Fprintf(errOut, "Nothing changed: cluster %s was already enrolled.\n", o.Cluster)
	}
	var out []byte
	if e.output == "json" {
		out, err = vaultadmin.ManifestsJSON(res.Manifests)
	} else {
		out, err = vaultadmin.ManifestsYAML(res.Manifests)
	}
	if err != nil {
		return err
	}
	_, err = e.streams.Out.Write(out)
	return err
}

// readFiles reads the files the flags name: the API server CA, the
// reviewer token and Vault's CA bundle.
func (f *enrollFlags) readFiles(e *env) error {
	o := &f.o
	if f.kubeCAFile != "" {
		b, err := os.ReadFile(f.kubeCAFile)
		if err != nil {
			return fmt.Errorf("reading --kubernetes-ca-file: %w", err)
		}
		o.Kubernetes.CACert = b
	}
	if path := f.reviewerJWT; path != "" {
		o.Kubernetes.ReviewerJWT = func(context.Context) (string, time.Time, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", time.Time{}, fmt.Errorf("reading --reviewer-jwt-file: %w", err)
			}
			jwt := strings.TrimSpace(string(b))
			return jwt, vaultadmin.JWTExpiry(jwt), nil
		}
	}
	caFile := f.caBundleFile
	if caFile == "" {
		caFile = e.getenv("VAULT_CACERT")
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("reading the Vault CA bundle: %w", err)
		}
		o.Manifests.CABundle = b
	}
	return nil
}

func newUnenrollCommand(e *env, vf *vaultFlags) *cobra.Command {
	o := vaultadmin.UnenrollOptions{}
	var cluster string
	var keepMount bool
	pf := &propagationFlags{}
	cmd := &cobra.Command{
		Use:   "unenroll --cluster NAME",
		Short: "Remove everything enroll made for a cluster in Vault (and optionally revoke its intermediates)",
		Long: `Finds what enroll made for the cluster, whichever auth method it used, and
removes all of it: every role in a kubernetes or AppRole auth mount named
--role or bound to --policy-name (an AppRole role's secret IDs are destroyed
with it, so none of them logs in again, even if the name is enrolled again),
the cluster's own kubernetes auth mount, disabled, which revokes every token it
issued (--keep-auth-mount to keep it; only a mount whose description is
"meshtrust: cluster <name>" is ever disabled, never a shared AppRole mount),
the policy, and the cluster's CRL exchange entry, so the other clusters stop
carrying its intermediates' CRLs (and so accept its workloads no longer). It
refuses, changing nothing, when an auth mount cannot be searched, and names
it; after the changes it searches again and fails naming anything left. With
--revoke it also revokes the cluster's unexpired intermediates (CA
certificates whose only permitted URI domain is the trust domain,
--trust-domain or else the one the policy pins, and whose CN is
--common-name), rebuilds the CRL, and follows it into the clusters as vault
revoke does.`,
		Example: `  meshtrust vault unenroll --cluster east
  meshtrust vault unenroll --cluster east --revoke --context east --context west`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkOutput("table", "json", "yaml"); err != nil {
				return err
			}
			o.Cluster, o.DisableAuthMount = cluster, !keepMount
			o.Default()
			if err := o.Validate(); err != nil {
				return err
			}
			o.Now = e.now()
			c, _, err := vf.connect(cmd.Context(), e)
			if err != nil {
				return err
			}
			plan, err := vaultadmin.PlanUnenroll(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			w := e.streams.Out
			header := fmt.Sprintf("Vault %s: cluster %s", c.Addr, cluster)
			if vf.dryRun {
				return printPlan(w, e.output, header, plan, &plan.Plan, fmt.Sprintf("Nothing to change: cluster %s is not enrolled.", cluster))
			}
			began := time.Now()
			res, err := plan.Apply(cmd.Context())
			if err != nil {
				return err
			}
			if err := printRevoked(w, e.output, header, res, res.Steps, res.Revoked); err != nil {
				return err
			}
			switch {
			case e.output != "table":
			case res.Changed:
				fmt.Fprintf(w, "Unenrolled: %d change(s) made.\n", res.Changes())
			default:
				fmt.Fprintf(w, "Nothing changed: cluster %s was not enrolled.\n", cluster)
			}
			if !o.Revoke || len(res.Revoked) == 0 {
				return nil
			}
			return followCRL(cmd.Context(), e, c, o.Mount, pf, began)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "cluster name given to enroll")
	f.StringVar(&o.Role, "role", "", "role name given to enroll (default meshtrust-<cluster>)")
	f.StringVar(&o.PolicyName, "policy-name", "", "policy name given to enroll (default meshtrust-<cluster>)")
	f.BoolVar(&keepMount, "keep-auth-mount", false, "keep the cluster's kubernetes auth mount (its roles of the cluster are still deleted)")
	f.BoolVar(&o.Revoke, "revoke", false, "also revoke the cluster's unexpired intermediates")
	f.StringVar(&o.Mount, "mount", vaultcontract.DefaultMount, "path of the PKI secrets engine, for --revoke")
	f.StringVar(&o.TrustDomain, "trust-domain", "", "the cluster's trust domain, for --revoke and its CRL exchange entry (default: the one its policy pins)")
	f.StringVar(&o.CommonName, "common-name", "", `the cluster's intermediate CN, for --revoke (default "<cluster> istio intermediate CA")`)
	pf.add(cmd)
	// Once needed to say where enroll put the cluster; unenroll now finds
	// it. Kept so that existing scripts still run.
	var ignored string
	f.StringVar(&ignored, "auth", "", "ignored: unenroll finds the cluster's roles in every kubernetes and AppRole mount")
	f.StringVar(&ignored, "auth-mount", "", "ignored: unenroll finds the cluster's roles in every kubernetes and AppRole mount")
	_ = f.MarkDeprecated("auth", "unenroll finds the cluster's roles whichever auth method enroll used")
	_ = f.MarkDeprecated("auth-mount", "unenroll finds the cluster's roles in every kubernetes and AppRole mount")
	return cmd
}

func newRetireRootCommand(e *env, vf *vaultFlags) *cobra.Command {
	o := vaultadmin.RetireOptions{}
	cmd := &cobra.Command{
		Use:   "retire-root --issuer-name NAME",
		Short: "Delete an old root issuer from Vault once no cluster signs under it",
		Long: `Deletes the root issuer --issuer-name from the PKI mount: the last step of
a root rotation. Clusters learn that the root is gone at their next renewal,
and keep trusting it for their meshtrust.io/root-grace.

It refuses, changing nothing and exiting 1, while
  - the root is the mount's default issuer: run
    meshtrust vault bootstrap --issuer-name <new> first, which makes the new
    root the default;
  - it is the mount's only root;
  - an ACL policy still grants sign-intermediate on <mount>/issuer/<name>/...
    (by name or issuer ID): re-enroll those clusters with
    meshtrust vault enroll ... --issuer-ref <new>. --force skips this check,
    and only this one.

The root's private key stays in the mount, unused, unless --delete-key is
given; it is then deleted after the issuer. A second run finds the root gone
and changes nothing.`,
		Example: `  meshtrust vault bootstrap --issuer-name meshtrust-root-2   # make the new root the default
  meshtrust vault retire-root --issuer-name meshtrust-root
  meshtrust vault retire-root --issuer-name meshtrust-root --delete-key -o json
  meshtrust vault retire-root --mount pki-mesh --issuer-name old-root --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkOutput("table", "json", "yaml"); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			c, version, err := vf.connect(cmd.Context(), e)
			if err != nil {
				return err
			}
			plan, err := vaultadmin.PlanRetire(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			w := e.streams.Out
			header := fmt.Sprintf("Vault %s (%s), mount %s/", c.Addr, version, o.Mount)
			if vf.dryRun {
				return printPlan(w, e.output, header, plan, &plan.Plan, fmt.Sprintf("Nothing to change: issuer %s is already retired.", o.IssuerName))
			}
			res, err := plan.Apply(cmd.Context())
			if err != nil {
				return err
			}
			if e.output != "table" {
				return printStructured(w, e.output, res)
			}
			fmt.Fprintln(w, header)
			printSteps(w, res.Steps, false)
			if res.Changed {
				fmt.Fprintf(w, "Retired: %d change(s) made.\n", res.Changes())
			} else {
				fmt.Fprintf(w, "Nothing changed: issuer %s was already retired.\n", o.IssuerName)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.IssuerName, "issuer-name", "", "the root issuer to delete (required)")
	f.StringVar(&o.Mount, "mount", vaultcontract.DefaultMount, "path of the PKI secrets engine")
	f.BoolVar(&o.Force, "force", false, "skip the check that no ACL policy still grants signing under the root")
	f.BoolVar(&o.DeleteKey, "delete-key", false, "also delete the root's private key from the mount")
	_ = cmd.MarkFlagRequired("issuer-name")
	return cmd
}
