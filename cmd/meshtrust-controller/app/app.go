// Package app builds meshtrust-controller's manager. It is importable so
// that end-to-end tests and the demo run exactly what the binary runs,
// in-process, against lab clusters.
package app

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/meshtrust/meshtrust/issuer"
	meshtrustv1alpha1 "github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/syncer"
)

// LeaderElectionID is fixed so every replica of every release contends for
// the same Lease in its namespace.
const LeaderElectionID = "meshtrust-controller.meshtrust.io"

// Options configures the manager. Flags fill it in the binary; tests and
// the demo fill it in code.
type Options struct {
	// MetricsAddr is where /metrics is served; "0" disables it.
	MetricsAddr string
	// ProbeAddr is where /healthz and /readyz are served; "0" disables them.
	ProbeAddr string
	// LeaderElect makes replicas elect one leader that alone reconciles.
	LeaderElect bool
	// LeaderElectionNamespace holds the Lease; empty means the pod's own.
	LeaderElectionNamespace string
	// EnableIssuer runs the VaultIssuer/VaultClusterIssuer controllers.
	EnableIssuer bool
	// EnableSyncer runs the cacerts syncer.
	EnableSyncer bool
	// KubeAPIQPS and KubeAPIBurst bound the client's request rate. Every
	// signed request costs several API calls, so the defaults are well above
	// client-go's 5/10.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// Issuer and Syncer configure the two halves.
	Issuer issuer.Options
	Syncer syncer.Options
	// Zap configures logging in the binary.
	Zap zap.Options

	// MetricsRegistry receives every meshtrust metric; nil means
	// controller-runtime's registry, served on MetricsAddr. Managers that
	// share a process (tests, the demo) each pass their own.
	MetricsRegistry prometheus.Registerer
	// InProcess lets several managers share one process: controller names
	// need not be unique, and no metrics or probe server is started.
	InProcess bool
	// Tune, when set, adjusts the manager's options last (tests shorten
	// leader-election durations with it).
	Tune func(*ctrl.Options)
}

// DefaultOptions returns the flag defaults.
func DefaultOptions() Options {
	return Options{
		MetricsAddr:  ":8080",
		ProbeAddr:    ":8081",
		EnableIssuer: true,
		EnableSyncer: true,
		KubeAPIQPS:   100,
		KubeAPIBurst: 200,
		Issuer:       issuer.DefaultOptions(),
		Syncer:       syncer.DefaultOptions(),
	}
}

// AddFlags binds every option to a flag.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address the health and readiness probes bind to.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader so that only one replica reconciles at a time.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the leader-election Lease; defaults to the pod's namespace.")
	fs.BoolVar(&o.EnableIssuer, "enable-issuer", o.EnableIssuer, "Run the VaultIssuer/VaultClusterIssuer controllers.")
	fs.BoolVar(&o.EnableSyncer, "enable-syncer", o.EnableSyncer, "Run the Istio cacerts syncer.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Queries per second to the Kubernetes API; each signed request costs several.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of queries to the Kubernetes API.")
	o.Issuer.AddFlags(fs)
	o.Syncer.AddFlags(fs)
	zapFlags := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	o.Zap.BindFlags(zapFlags)
	fs.AddGoFlagSet(zapFlags)
}

// NewScheme returns a scheme with every type the controllers read or write.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := errors.Join(
		clientgoscheme.AddToScheme(scheme),
		cmapi.AddToScheme(scheme),
		meshtrustv1alpha1.AddToScheme(scheme),
	); err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	return scheme, nil
}

// NewManager builds the manager with the enabled controllers registered.
// The caller starts it.
func NewManager(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if !opts.EnableIssuer && !opts.EnableSyncer {
		return nil, errors.New("nothing to run: both --enable-issuer and --enable-syncer are false")
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = opts.KubeAPIQPS, opts.KubeAPIBurst

	var cacheOpts cache.Options
	if opts.EnableSyncer {
		// Only opted-in Certificates and cert-manager's own Secrets are
		// cached, never every Secret in the cluster.
		cacheOpts.ByObject = syncer.CacheOptions(opts.Syncer)
		cacheOpts.DefaultTransform = cache.TransformStripManagedFields()
	}
	mgrOpts := ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
	}
	registry := opts.MetricsRegistry
	if registry == nil {
		registry = metrics.Registry
	}
	if err := registry.Register(newBuildInfo()); err != nil {
		return nil, fmt.Errorf("registering meshtrust_build_info: %w", err)
	}
	if opts.InProcess {
		mgrOpts.Metrics.BindAddress = "0"
		mgrOpts.HealthProbeBindAddress = "0"
		mgrOpts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	}
	if opts.Tune != nil {
		opts.Tune(&mgrOpts)
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	if opts.EnableIssuer {
		opts.Issuer.MetricsRegistry = registry
		if err := issuer.Setup(ctx, mgr, opts.Issuer); err != nil {
			return nil, fmt.Errorf("setting up the issuer: %w", err)
		}
	}
	if opts.EnableSyncer {
		opts.Syncer.MetricsRegistry = registry
		if err := syncer.Setup(ctx, mgr, opts.Syncer); err != nil {
			return nil, fmt.Errorf("setting up the syncer: %w", err)
		}
	}
	return mgr, nil
}
