package issuer

import (
	"context"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/conditionmetric"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// ReadyStatusMetric is the Ready condition of every VaultIssuer and
// VaultClusterIssuer, by kind, namespace ("" for cluster issuers), name and
// condition (True, False, Unknown).
const ReadyStatusMetric = "meshtrust_issuer_ready_status"

// newReadinessCollector reports ReadyStatusMetric from the cache at each
// scrape. Every replica reports it, the standby too: the status is the
// leader's, read back from the API server.
func newReadinessCollector(reader client.Reader, log logr.Logger) prometheus.Collector {
	return conditionmetric.NewCollector(ReadyStatusMetric,
		"Ready condition of each VaultIssuer and VaultClusterIssuer: 1 for its current status (condition True, False or Unknown), 0 for the others.",
		[]string{"kind", "namespace", "name"},
		func(ctx context.Context) ([]conditionmetric.Object, error) {
			var issuers v1alpha1.VaultIssuerList
			if err := reader.List(ctx, &issuers); err != nil {
				return nil, err
			}
			var clusterIssuers v1alpha1.VaultClusterIssuerList
			if err := reader.List(ctx, &clusterIssuers); err != nil {
				return nil, err
			}
			objs := make([]conditionmetric.Object, 0, len(issuers.Items)+len(clusterIssuers.Items))
			for i := range issuers.Items {
				objs = append(objs, readyObject("VaultIssuer", &issuers.Items[i]))
			}
			for i := range clusterIssuers.Items {
				objs = append(objs, readyObject("VaultClusterIssuer", &clusterIssuers.Items[i]))
			}
			return objs, nil
		}, log)
}

func readyObject(kind string, iss issuerapi.Issuer) conditionmetric.Object {
	o := conditionmetric.Object{Labels: []string{kind, iss.GetNamespace(), iss.GetName()}}
	if c := meta.FindStatusCondition(iss.GetConditions(), issuerapi.IssuerConditionTypeReady); c != nil {
		o.Status = c.Status
	}
	return o
}
