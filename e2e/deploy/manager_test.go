package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app"
	"github.com/meshtrust/meshtrust/e2e/mesh"
)

// managerSpec says how to run one in-process meshtrust-controller: the
// manager cmd/meshtrust-controller builds (app.NewManager), with the
// options the chart's arguments set.
type managerSpec struct {
	name            string // log file name and syncer controller name
	issuer, syncer  bool
	watchNamespaces []string
	targets         []string
	clock           clock.Clock // the syncer's; nil means real time
	// allowedIssuers is --syncer-allowed-issuers; nil means meshtrust's.
	allowedIssuers []string
	// lease timings; zero means controller-runtime's defaults
	leaseDuration, renewDeadline, retryPeriod time.Duration
	// kill makes cancelling the manager model a crashed process: the lease
	// is not released but left to expire.
	kill bool
}

// running is one started manager.
type running struct {
	mgr      ctrl.Manager
	registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	logPath  string
}

// startManager starts a manager with cfg (the impersonating config) and
// stops it when t ends.
func startManager(t *testing.T, cfg *rest.Config, spec managerSpec) *running {
	t.Helper()
	logPath := filepath.Join(shared.Get(t).Dir, spec.name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts := app.DefaultOptions()
	opts.InProcess = true
	opts.MetricsRegistry = reg
	opts.LeaderElect = true
	opts.LeaderElectionNamespace = releaseNS
	opts.EnableIssuer, opts.EnableSyncer = spec.issuer, spec.syncer
	opts.Issuer.ClusterResourceNamespace = releaseNS
	opts.Syncer.TargetNamespaces = spec.targets
	opts.Syncer.Clock = spec.clock
	opts.Syncer.ControllerName = "meshtrust-syncer-" + spec.name
	opts.Syncer.WatchNamespaces = spec.watchNamespaces
	opts.Syncer.AllowedIssuers = spec.allowedIssuers
	logger := zap.New(zap.WriteTo(logFile), zap.UseDevMode(true))
	opts.Tune = func(o *ctrl.Options) {
		o.Logger = logger
		o.LeaderElectionReleaseOnCancel = !spec.kill
		if spec.leaseDuration > 0 {
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = &spec.leaseDuration, &spec.renewDeadline, &spec.retryPeriod
		}
	}
	ctx, cancel := context.WithCancel(ctrllog.IntoContext(context.Background(), logger))
	mgr, err := app.NewManager(ctx, cfg, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{mgr: mgr, registry: reg, cancel: cancel, done: make(chan struct{}), logPath: logPath}
	go func() {
		r.err = mgr.Start(ctx)
		logFile.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("%s log: %s", spec.name, logPath)
		}
	})
	return r
}

// stop cancels the manager and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Errorf("manager did not stop within a minute (log %s)", r.logPath)
	}
}

// elected reports whether the manager holds the lease.
func (r *running) elected() bool {
	select {
	case <-r.mgr.Elected():
		return true
	default:
		return false
	}
}

// failed returns the manager's error if it stopped on its own.
func (r *running) failed() error {
	select {
	case <-r.done:
		if r.err == nil {
			return errors.New("manager stopped")
		}
		return fmt.Errorf("manager stopped: %w", r.err)
	default:
		return nil
	}
}

// syncs is how many syncer reconciles this manager finished.
func (r *running) syncs(t *testing.T) float64 {
	t.Helper()
	n, err := mesh.CounterTotal(r.registry, "meshtrust_cacerts_sync_total")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// skewedClock is the real clock moved forward by an offset the test sets,
// so a rotation slot can be reached without waiting for it while
// certificates issued meanwhile stay valid.
type skewedClock struct {
	clock.RealClock
	offset atomic.Int64
}

func (c *skewedClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *skewedClock) setNow(t time.Time)              { c.offset.Store(int64(time.Until(t))) }

// eventually polls cond every 100ms until it returns nil, failing t at
// once if the manager has stopped (waiting on would only hide why) or when
// timeout passes. Each call of cond gets its own short deadline, so the
// failure names the last real state, not an expired context.
func (r *running) eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		if err := r.failed(); err != nil {
			t.Fatalf("waiting for %s: %v (log %s)", what, err, r.logPath)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last := cond(ctx)
		cancel()
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %s: %v (log %s)", what, timeout, last, r.logPath)
		}
		<-ticker.C
	}
}
