// Command meshtrust-controller is one controller-runtime manager that runs
// meshtrust's Vault issuer and/or its cacerts syncer.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/meshtrust/meshtrust/issuer"
	meshtrustv1alpha1 "github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// leaderElectionID is fixed so every replica of every release contends for
// the same lease in its namespace.
const leaderElectionID = "meshtrust-controller.meshtrust.io"

type options struct {
	metricsAddr      string
	probeAddr        string
	leaderElect      bool
	leaderElectionNS string
	enableIssuer     bool
	enableSyncer     bool
	kubeAPIQPS       float32
	kubeAPIBurst     int
	zap              zap.Options
	issuer           issuer.Options
}

func (o *options) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles at a time.")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader-election lease; defaults to the pod's namespace.")
	fs.BoolVar(&o.enableIssuer, "enable-issuer", true, "Run the VaultIssuer/VaultClusterIssuer controllers.")
	fs.BoolVar(&o.enableSyncer, "enable-syncer", true, "Run the Istio cacerts syncer.")
	fs.Float32Var(&o.kubeAPIQPS, "kube-api-qps", 100, "Queries per second to the Kubernetes API; each signed request costs several.")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 200, "Burst of queries to the Kubernetes API.")
	o.issuer.AddFlags(fs)
	zapFlags := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	o.zap.BindFlags(zapFlags)
	fs.AddGoFlagSet(zapFlags)
}

func main() {
	opts := options{issuer: issuer.DefaultOptions()}
	fs := pflag.NewFlagSet("meshtrust-controller", pflag.ExitOnError)
	opts.addFlags(fs)
	_ = fs.Parse(os.Args[1:])
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))
	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		ctrl.Log.Error(err, "meshtrust-controller failed")
		os.Exit(1)
	}
}

func newScheme() (*runtime.Scheme, error) {
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

func run(ctx context.Context, opts options) error {
	if !opts.enableIssuer && !opts.enableSyncer {
		return errors.New("nothing to run: both --enable-issuer and --enable-syncer are false")
	}
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading Kubernetes client configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = opts.kubeAPIQPS, opts.kubeAPIBurst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: opts.metricsAddr},
		HealthProbeBindAddress:        opts.probeAddr,
		LeaderElection:                opts.leaderElect,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       opts.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	if opts.enableIssuer {
		if err := issuer.Setup(ctx, mgr, opts.issuer); err != nil {
			return fmt.Errorf("setting up the issuer: %w", err)
		}
	}
	return mgr.Start(ctx)
}
