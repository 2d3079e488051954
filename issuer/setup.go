package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshtrust/meshtrust/internal/statusguard"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// FieldOwner is the server-side-apply field manager of the issuer's status
// writes, and the name its events are reported by.
const FieldOwner = "meshtrust-issuer"

// Options configures the issuer controllers. Flags set every field except
// MetricsRegistry and Clock, which callers set in code.
type Options struct {
	// ClusterResourceNamespace is where VaultClusterIssuers read their
	// Secrets and service accounts from, like cert-manager's option of the
	// same name.
	ClusterResourceNamespace string
	// HealthCheckInterval is how often every issuer is checked again
	// (sys/health, login, issuer read) after its first check. issuer-lib
	// only checks on create or change; this catches Vault going away and
	// coming back. Zero disables the periodic check.
	HealthCheckInterval time.Duration
	// MaxRetryDuration is how long a request keeps being retried after
	// non-permanent sign errors (such as a Vault policy denying the call)
	// before it is marked Failed. Vault being down does not count: requests
	// then wait for the issuer to be Ready again and never fail for it.
	// Zero would make every error terminal at once.
	MaxRetryDuration time.Duration
	// MaxConcurrentReconciles is the number of workers per controller;
	// cert-manager's default is 5.
	MaxConcurrentReconciles int
	// VaultTimeout bounds each HTTP call to Vault.
	VaultTimeout time.Duration
	// RootsCacheTTL is how long the signing issuer's trust anchors, which
	// become ca.crt, are reused before Vault is asked again. A root added
	// during a rotation reaches ca.crt at the first issuance after it.
	RootsCacheTTL time.Duration
	// CRLRefreshInterval is how often each VaultClusterIssuer that mints
	// intermediates reads Vault's CRLs and the CRL exchange and hands them
	// to the syncer (besides at once on a new CRL of the cluster's own, or a
	// meshtrust.io/crl-refresh annotation). Zero turns CRLs off.
	CRLRefreshInterval time.Duration
	// DisableKubernetesCSR turns off signing of Kubernetes
	// CertificateSigningRequests (signerName vaultcontract.SignerNamePrefix+<name>).
	DisableKubernetesCSR bool
	// MetricsRegistry receives the issuer's metrics; nil means
	// controller-runtime's metrics.Registry, served by the manager.
	MetricsRegistry prometheus.Registerer
	// Clock drives condition times and token renewal; nil means real time.
	Clock clock.WithTicker
}

// DefaultOptions returns the flag defaults.
func DefaultOptions() Options {
	return Options{
		ClusterResourceNamespace: "meshtrust-system",
		HealthCheckInterval:      5 * time.Minute,
		MaxRetryDuration:         time.Hour,
		MaxConcurrentReconciles:  5,
		VaultTimeout:             30 * time.Second,
		RootsCacheTTL:            time.Minute,
		CRLRefreshInterval:       time.Minute,
	}
}

// AddFlags registers the --issuer-... flags, defaulting every field that is
// still zero to DefaultOptions.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	d := DefaultOptions()
	if o.ClusterResourceNamespace == "" {
		o.ClusterResourceNamespace = d.ClusterResourceNamespace
	}
	if o.HealthCheckInterval == 0 {
		o.HealthCheckInterval = d.HealthCheckInterval
	}
	if o.MaxRetryDuration == 0 {
		o.MaxRetryDuration = d.MaxRetryDuration
	}
	if o.MaxConcurrentReconciles == 0 {
		o.MaxConcurrentReconciles = d.MaxConcurrentReconciles
	}
	if o.VaultTimeout == 0 {
		o.VaultTimeout = d.VaultTimeout
	}
	if o.RootsCacheTTL == 0 {
		o.RootsCacheTTL = d.RootsCacheTTL
	}
	if o.CRLRefreshInterval == 0 {
		o.CRLRefreshInterval = d.CRLRefreshInterval
	}
	fs.StringVar(&o.ClusterResourceNamespace, "issuer-cluster-resource-namespace", o.ClusterResourceNamespace,
		"Namespace where VaultClusterIssuers read their Secrets and service accounts, and keep the CRL exchange ConfigMaps the syncer reads (its --syncer-crl-namespace).")
	fs.DurationVar(&o.HealthCheckInterval, "issuer-health-check-interval", o.HealthCheckInterval,
		"How often every Vault issuer is health-checked again (sys/health, login, PKI issuer read); 0 disables.")
	fs.DurationVar(&o.MaxRetryDuration, "issuer-max-retry-duration", o.MaxRetryDuration,
		"How long a request is retried after a non-permanent Vault error before it is marked Failed. Vault being unreachable or sealed never fails a request.")
	fs.IntVar(&o.MaxConcurrentReconciles, "issuer-max-concurrent-reconciles", o.MaxConcurrentReconciles,
		"Workers per issuer controller.")
	fs.DurationVar(&o.VaultTimeout, "issuer-vault-timeout", o.VaultTimeout,
		"Timeout of each HTTP call to Vault.")
	fs.DurationVar(&o.RootsCacheTTL, "issuer-roots-cache-ttl", o.RootsCacheTTL,
		"How long the signing Vault issuer's trust anchors (ca.crt) are reused; a root bootstrap adds in Vault reaches ca.crt at the first issuance after this.")
	fs.DurationVar(&o.CRLRefreshInterval, "issuer-crl-refresh-interval", o.CRLRefreshInterval,
		"How often Vault's CRLs and the other clusters' CRL exchange entries are read and handed to the syncer (also at once when meshtrust vault revoke asks); 0 turns CRLs off.")
	fs.BoolVar(&o.DisableKubernetesCSR, "issuer-disable-kubernetes-csr", o.DisableKubernetesCSR,
		"Do not sign Kubernetes CertificateSigningRequests (signerName vaultclusterissuers.meshtrust.io/<name>).")
}

func (o Options) validate() error {
	var errs []error
	if o.ClusterResourceNamespace == "" {
		errs = append(errs, errors.New("--issuer-cluster-resource-namespace must not be empty"))
	}
	if o.HealthCheckInterval < 0 {
		errs = append(errs, errors.New("--issuer-health-check-interval must not be negative"))
	}
	if o.MaxRetryDuration <= 0 {
		errs = append(errs, errors.New("--issuer-max-retry-duration must be positive: zero makes every error terminal at once"))
	}
	if o.CRLRefreshInterval < 0 {
		errs = append(errs, errors.New("--issuer-crl-refresh-interval must not be negative"))
	}
	if o.MaxConcurrentReconciles < 1 {
		errs = append(errs, errors.New("--issuer-max-concurrent-reconciles must be at least 1"))
	}
	return errors.Join(errs...)
}

// The issuer's RBAC. controller-gen reads markers only outside a doc
// comment, so they stand apart from Setup's.
//
// +kubebuilder:rbac:groups=meshtrust.io,resources=vaultissuers;vaultclusterissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshtrust.io,resources=vaultissuers/status;vaultclusterissuers/status,verbs=patch;update
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests/status,verbs=patch;update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/status,verbs=patch;update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,verbs=sign,resourceNames=vaultclusterissuers.meshtrust.io/*
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Setup registers the issuer controllers (VaultIssuer, VaultClusterIssuer,
// CertificateRequest and CertificateSigningRequest), the controllers that
// report truncated lifetimes on issued requests, the CRL refresher, the
// periodic health check, and the issuer's metrics with mgr. The manager's scheme must hold
// client-go, cert-manager v1 and meshtrust v1alpha1 types.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := opts.validate(); err != nil {
		return fmt.Errorf("issuer options: %w", err)
	}
	reg := opts.MetricsRegistry
	if reg == nil {
		reg = metrics.Registry
	}
	m, err := vault.NewMetrics(reg)
	if err != nil {
		return err
	}
	if err := reg.Register(newReadinessCollector(mgr.GetCache(), mgr.GetLogger().WithName("issuer-metrics"))); err != nil {
		return fmt.Errorf("registering %s: %w", ReadyStatusMetric, err)
	}
	var clk clock.WithTicker = clock.RealClock{}
	if opts.Clock != nil {
		clk = opts.Clock
	}
	recorder := mgr.GetEventRecorder(FieldOwner)
	s := &Signer{
		Client:                   mgr.GetClient(),
		APIReader:                mgr.GetAPIReader(),
		Factory:                  vault.NewCache(m, clk),
		Metrics:                  m,
		Clock:                    clk,
		ClusterResourceNamespace: opts.ClusterResourceNamespace,
		VaultTimeout:             opts.VaultTimeout,
		RootsCacheTTL:            opts.RootsCacheTTL,
		// The CertificateRequest and the Kubernetes CSR controllers' workers
		// may all call one issuer's Vault at once; Go's default of
		// GOMAXPROCS+1 idle connections (3 on 2 cores) closed the rest
		// after each call and opened new ones.
		VaultIdleConnections: 2 * opts.MaxConcurrentReconciles,
	}
	rc := &recheck{client: mgr.GetClient(), clients: s.Factory, interval: opts.HealthCheckInterval, clock: clk, logger: mgr.GetLogger().WithName("issuer-recheck"),
		issuers: make(chan event.GenericEvent), clusterIssuers: make(chan event.GenericEvent)}
	issuerGVK := v1alpha1.GroupVersion.WithKind("VaultIssuer")
	clusterIssuerGVK := v1alpha1.GroupVersion.WithKind("VaultClusterIssuer")
	workers := controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}

	cc := &controllers.CombinedController{
		IssuerTypes:        []issuerapi.Issuer{&v1alpha1.VaultIssuer{}},
		ClusterIssuerTypes: []issuerapi.Issuer{&v1alpha1.VaultClusterIssuer{}},
		FieldOwner:         FieldOwner,
		MaxRetryDuration:   opts.MaxRetryDuration,
		Check:              s.Check,
		Sign:               s.Sign,
		EventRecorder:      WithoutIssuedEvents(recorder),
		Clock:              clk,
		// ca.crt is the product: the syncer and Istio take the trust bundle
		// from it, and it holds only real roots.
		SetCAOnCertificateRequest:      true,
		DisableKubernetesCSRController: opts.DisableKubernetesCSR,
		ControllerOptions:              workers,
		PreSetupWithManager: func(_ context.Context, gvk schema.GroupVersionKind, _ ctrl.Manager, b *builder.Builder) error {
			// issuer-lib checks an issuer only on create or change; these
			// channels let the periodic check enqueue every issuer.
			switch gvk {
			case issuerGVK:
				b.WatchesRawSource(source.Channel(rc.issuers, &handler.EnqueueRequestForObject{}))
			case clusterIssuerGVK:
				b.WatchesRawSource(source.Channel(rc.clusterIssuers, &handler.EnqueueRequestForObject{}))
			default:
				// issuer-lib v0.11.0 hands ControllerOptions to the issuer
				// controllers only; the request controllers would run one
				// worker, and signing is where the workers matter.
				b.WithOptions(workers)
			}
			return nil
		},
	}
	// issuer-lib takes its client from the manager; the guard keeps a
	// signature for a request that was replaced under the same name off
	// its successor.
	guarded := guardedManager{Manager: mgr, client: statusguard.New(mgr.GetClient())}
	if err := cc.SetupWithManager(ctx, guarded); err != nil {
		return fmt.Errorf("setting up the issuer controllers: %w", err)
	}
	if err := setupLifetimeReporters(mgr, recorder, clk, opts); err != nil {
		return err
	}
	if err := setupCRLRefresher(mgr, s, recorder, clk, reg, opts); err != nil {
		return err
	}
	if opts.HealthCheckInterval > 0 {
		if err := mgr.Add(rc); err != nil {
			return fmt.Errorf("adding the periodic issuer health check: %w", err)
		}
	}
	return nil
}

// recheck enqueues every issuer each interval so that issuer-lib runs Check
// again, and drops the Vault clients of issuers that are gone.
type recheck struct {
	client                  client.Reader
	clients                 vault.ClientFactory
	interval                time.Duration
	clock                   clock.WithTicker
	logger                  logr.Logger
	issuers, clusterIssuers chan event.GenericEvent
}

// Start implements manager.Runnable. It runs only on the leader, like the
// controllers it feeds.
func (r *recheck) Start(ctx context.Context) error {
	t := r.clock.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			r.enqueueAll(ctx)
		}
	}
}

func (r *recheck) enqueueAll(ctx context.Context) {
	logger := r.logger
	live := map[types.UID]bool{}
	var issuers v1alpha1.VaultIssuerList
	issuersErr := r.client.List(ctx, &issuers)
	if issuersErr != nil {
		logger.Error(issuersErr, "Listing VaultIssuers for the periodic health check")
	}
	var clusterIssuers v1alpha1.VaultClusterIssuerList
	clusterIssuersErr := r.client.List(ctx, &clusterIssuers)
	if clusterIssuersErr != nil {
		logger.Error(clusterIssuersErr, "Listing VaultClusterIssuers for the periodic health check")
	}
	for i := range issuers.Items {
		live[issuers.Items[i].UID] = true
		if !send(ctx, r.issuers, &issuers.Items[i]) {
			return
		}
	}
	for i := range clusterIssuers.Items {
		live[clusterIssuers.Items[i].UID] = true
		if !send(ctx, r.clusterIssuers, &clusterIssuers.Items[i]) {
			return
		}
	}
	// Only a complete list says which issuers are gone.
	if issuersErr == nil && clusterIssuersErr == nil {
		r.clients.Retain(func(uid types.UID) bool { return live[uid] })
	}
}

func send(ctx context.Context, ch chan<- event.GenericEvent, obj client.Object) bool {
	select {
	case ch <- event.GenericEvent{Object: obj}:
		return true
	case <-ctx.Done():
		return false
	}
}

// guardedManager is mgr with issuer-lib's client swapped for the status guard.
type guardedManager struct {
	ctrl.Manager
	client client.Client
}

func (m guardedManager) GetClient() client.Client { return m.client }
