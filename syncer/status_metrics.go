package syncer

import (
	"context"
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/conditionmetric"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// Metrics that describe the syncer's state rather than count its work. The
// alert rules in deploy/charts/meshtrust/files are written against them.
const (
	// SyncedStatusMetric is the CACertsSynced condition of every opted-in
	// Certificate, by the Certificate's namespace and name.
	SyncedStatusMetric = "meshtrust_certificate_cacerts_synced_status"
	// LifetimeGuardMetric is the lifetime guard in seconds.
	LifetimeGuardMetric = "meshtrust_cacerts_lifetime_guard_seconds"
)

// registerStatusMetrics registers SyncedStatusMetric, read from reader (the
// manager's cache) at each scrape, and LifetimeGuardMetric. Every replica
// reports both; only the leader writes the conditions.
func registerStatusMetrics(reg prometheus.Registerer, reader client.Reader, opts Options, log logr.Logger) error {
	synced := conditionmetric.NewCollector(SyncedStatusMetric,
		"CACertsSynced condition of each opted-in cert-manager Certificate (namespace and name of the Certificate): 1 for its current status (condition True, False or Unknown), 0 for the others.",
		[]string{"namespace", "name"},
		func(ctx context.Context) ([]conditionmetric.Object, error) {
			var list cmapi.CertificateList
			if err := reader.List(ctx, &list); err != nil {
				return nil, err
			}
			var objs []conditionmetric.Object
			for i := range list.Items {
				// Certificates that do not opt in are cached as stubs
				// without status, so only the syncer's own show up.
				if c := decision.Condition(&list.Items[i], ConditionCACertsSynced); c != nil {
					objs = append(objs, conditionmetric.Object{
						Labels: []string{list.Items[i].Namespace, list.Items[i].Name},
						Status: metav1.ConditionStatus(c.Status),
					})
				}
			}
			return objs, nil
		}, log)
	guard := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: LifetimeGuardMetric,
		Help: "Workload-certificate lifetime plus safety margin (--syncer-workload-cert-ttl + --syncer-safety-margin), in seconds: the syncer forces a renewal of an intermediate with less than this left.",
	})
	guard.Set(decision.Input{WorkloadTTL: opts.WorkloadCertTTL, SafetyMargin: opts.SafetyMargin}.Guard().Seconds())
	for _, c := range []prometheus.Collector{synced, guard} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register syncer status metrics: %w", err)
		}
	}
	return nil
}
