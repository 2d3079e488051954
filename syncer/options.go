package syncer

import (
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/utils/clock"

	"github.com/meshtrust/meshtrust/internal/meshconfig"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// Options configure the syncer.
type Options struct {
	// WatchNamespaces limits the Certificates and Secrets the syncer watches
	// and caches to these namespaces, so its RBAC can be namespaced too.
	// Empty, or "*", watches every namespace.
	WatchNamespaces []string
	// TargetNamespaces are the namespaces a Certificate may name in
	// meshtrust.io/istio-cacerts-target besides its own. "*" allows all.
	TargetNamespaces []string
	// WorkloadCertTTL is the lifetime of workload certificates istiod issues;
	// an intermediate with less than this left is never written, and the
	// lifetime guard renews before it gets there.
	WorkloadCertTTL time.Duration
	// SafetyMargin is added to WorkloadCertTTL by the lifetime guard.
	SafetyMargin time.Duration
	// SecretName is the default target Secret name (Istio reads "cacerts").
	SecretName string
	// MaxConcurrentReconciles bounds parallel reconciles.
	MaxConcurrentReconciles int
	// CRLNamespace holds the CRL exchange ConfigMaps of VaultClusterIssuers:
	// the issuer's cluster resource namespace.
	CRLNamespace string
	// CRLPropagationDelay is how long a new intermediate's CRL must have
	// been in Vault's CRL exchange before the intermediate goes into
	// cacerts, so that the other clusters' proxies carry the CRL before the
	// first workload certificate it signs reaches them: their issuers'
	// refresh interval plus their kubelets' sync of istiod's cacerts and
	// the proxies' istio-ca-crl volumes. Zero installs it once published.
	CRLPropagationDelay time.Duration
	// AllowedIssuers are the issuers whose Certificates the syncer
	// installs, as "<Kind>.<group>[/<name>]" (decision.ParseIssuerRef);
	// empty means meshtrust's VaultClusterIssuer and VaultIssuer. Any other
	// opted-in Certificate is refused, cacerts untouched.
	AllowedIssuers []string

	// MeshConfigMap is Istio's mesh ConfigMap in the target's namespace,
	// whose trustDomain the syncer checks against the intermediate's URI
	// name constraint (a Warning event when they differ); empty skips it.
	MeshConfigMap string

	// allowedIssuers is AllowedIssuers parsed by complete.
	allowedIssuers []decision.IssuerRef

	// Clock is the time source; nil means the real clock. Tests inject a
	// fake one to drive schedules and expiry without waiting.
	Clock clock.Clock `json:"-"`
	// MetricsRegistry receives the syncer's metrics; nil means
	// controller-runtime's metrics.Registry, served by the manager.
	MetricsRegistry prometheus.Registerer `json:"-"`
	// ControllerName names the controller (and event source); it must be
	// unique per manager. Default "meshtrust-syncer".
	ControllerName string
}

// DefaultOptions returns the flag defaults.
func DefaultOptions() Options {
	return Options{
		WorkloadCertTTL:         24 * time.Hour,
		SafetyMargin:            time.Hour,
		SecretName:              "cacerts",
		MeshConfigMap:           meshconfig.ConfigMapName,
		MaxConcurrentReconciles: 2,
		ControllerName:          "meshtrust-syncer",
		CRLNamespace:            "meshtrust-system",
		CRLPropagationDelay:     5 * time.Minute,
	}
}

// AddFlags registers the --syncer-* flags, defaulting unset fields.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	d := DefaultOptions()
	fs.StringSliceVar(&o.WatchNamespaces, "syncer-watch-namespaces", o.WatchNamespaces,
		`namespaces whose opted-in Certificates the syncer watches (empty or "*" for all)`)
	fs.StringSliceVar(&o.TargetNamespaces, "syncer-target-namespaces", o.TargetNamespaces,
		`namespaces a Certificate may target with meshtrust.io/istio-cacerts-target besides its own ("*" for any)`)
	fs.DurationVar(&o.WorkloadCertTTL, "syncer-workload-cert-ttl", or(o.WorkloadCertTTL, d.WorkloadCertTTL),
		"lifetime of workload certificates istiod issues; intermediates expiring sooner are never written")
	fs.DurationVar(&o.SafetyMargin, "syncer-safety-margin", or(o.SafetyMargin, d.SafetyMargin),
		"extra time on top of the workload lifetime before expiry at which the syncer forces a renewal")
	fs.StringVar(&o.SecretName, "syncer-secret-name", or(o.SecretName, d.SecretName),
		"default name of the Secret the syncer writes in the Certificate's namespace")
	fs.StringVar(&o.CRLNamespace, "syncer-crl-namespace", or(o.CRLNamespace, d.CRLNamespace),
		"namespace of the VaultClusterIssuers' CRL exchange ConfigMaps: the issuer's --issuer-cluster-resource-namespace")
	fs.DurationVar(&o.CRLPropagationDelay, "syncer-crl-propagation-delay", or(o.CRLPropagationDelay, d.CRLPropagationDelay),
		"how long a new intermediate's CRL must have been in Vault's CRL exchange before the intermediate goes into cacerts, so that other clusters carry it first (their issuers' refresh interval plus kubelets' volume sync)")
	fs.IntVar(&o.MaxConcurrentReconciles, "syncer-max-concurrent-reconciles", or(o.MaxConcurrentReconciles, d.MaxConcurrentReconciles),
		"maximum number of Certificates synced in parallel")
	fs.StringVar(&o.MeshConfigMap, "syncer-mesh-configmap", or(o.MeshConfigMap, d.MeshConfigMap),
		`Istio's mesh ConfigMap in the target namespace, whose trustDomain must match the intermediate's URI name constraint (a Warning event when not; "" skips the check)`)
	fs.StringSliceVar(&o.AllowedIssuers, "syncer-allowed-issuers", o.AllowedIssuers,
		`issuers whose opted-in Certificates the syncer installs, as <Kind>.<group>[/<name>] (default VaultClusterIssuer.meshtrust.io,VaultIssuer.meshtrust.io); any other is refused`)
}

func or[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// complete fills defaults and checks values.
func (o Options) complete() (Options, error) {
	d := DefaultOptions()
	o.SecretName = or(o.SecretName, d.SecretName)
	o.MaxConcurrentReconciles = or(o.MaxConcurrentReconciles, d.MaxConcurrentReconciles)
	o.ControllerName = or(o.ControllerName, d.ControllerName)
	o.CRLNamespace = or(o.CRLNamespace, d.CRLNamespace)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.WorkloadCertTTL <= 0 {
		return o, fmt.Errorf("--syncer-workload-cert-ttl must be positive, got %s", o.WorkloadCertTTL)
	}
	if o.CRLPropagationDelay < 0 {
		return o, fmt.Errorf("--syncer-crl-propagation-delay must not be negative, got %s", o.CRLPropagationDelay)
	}
	if o.SafetyMargin < 0 {
		return o, fmt.Errorf("--syncer-safety-margin must not be negative, got %s", o.SafetyMargin)
	}
	o.allowedIssuers = nil
	for _, s := range o.AllowedIssuers {
		ref, err := decision.ParseIssuerRef(s)
		if err != nil {
			return o, fmt.Errorf("--syncer-allowed-issuers: %w", err)
		}
		o.allowedIssuers = append(o.allowedIssuers, ref)
	}
	if len(o.allowedIssuers) == 0 {
		o.allowedIssuers = decision.DefaultAllowedIssuers()
	}
	return o, nil
}

// watchedNamespaces returns the namespaces to restrict caches to, or nil
// for all of them.
func (o Options) watchedNamespaces() []string {
	if len(o.WatchNamespaces) == 0 || slices.Contains(o.WatchNamespaces, "*") {
		return nil
	}
	return o.WatchNamespaces
}

// targetCacheNamespaces returns the namespaces where cacerts Secrets may be
// read or written, or nil when that is every namespace.
func (o Options) targetCacheNamespaces() []string {
	watched := o.watchedNamespaces()
	if watched == nil || slices.Contains(o.TargetNamespaces, "*") {
		return nil
	}
	all := append(slices.Clone(watched), o.TargetNamespaces...)
	slices.Sort(all)
	return slices.Compact(all)
}

// targetAllowed reports whether the syncer may write into ns for a
// Certificate in certNS.
func (o Options) targetAllowed(certNS, ns string) bool {
	return ns == certNS || slices.Contains(o.TargetNamespaces, ns) || slices.Contains(o.TargetNamespaces, "*")
}
