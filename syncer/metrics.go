package syncer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the syncer's Prometheus metrics. Labels never carry secret
// material: only namespace and name of cacerts, results and check names.
type Metrics struct {
	// Expiry is the cacerts intermediate's notAfter, per target Secret.
	Expiry *prometheus.GaugeVec
	// Syncs counts reconcile outcomes by result.
	Syncs *prometheus.CounterVec
	// Roots is the number of roots in the written root bundle.
	Roots *prometheus.GaugeVec
	// LastSync is when cacerts was last written (any target).
	LastSync prometheus.Gauge
	// ValidationFailures counts refusals by failed check
	// (meshtrust_cacerts_validation_failures_total{check}).
	ValidationFailures *prometheus.CounterVec
	// CRLNextUpdate is the earliest nextUpdate of the CRLs in a target's
	// ca-crl.pem: once it passes, Envoy refuses every chain that CRL covers.
	CRLNextUpdate *prometheus.GaugeVec
	// CRLRevokedSerials is how many distinct serials a target's ca-crl.pem
	// revokes.
	CRLRevokedSerials *prometheus.GaugeVec
	// CRLValidationFailures counts CRL inputs refused, by failed check
	// (meshtrust_crl_validation_failures_total{check}).
	CRLValidationFailures *prometheus.CounterVec
}

// Sync results.
const (
	ResultSynced    = "synced"
	ResultUnchanged = "unchanged"
	ResultRefused   = "refused"
	ResultPending   = "pending"
	ResultError     = "error"
)

// NewMetrics builds the metrics and registers them with reg (if non-nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrust_cacerts_expiry_timestamp_seconds",
			Help: "notAfter of the signing certificate in the cacerts Secret, as a Unix timestamp.",
		}, []string{"namespace", "name"}),
		Syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_cacerts_sync_total",
			Help: "cacerts reconciles by result (synced, unchanged, refused, pending, error).",
		}, []string{"result"}),
		Roots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrust_cacerts_roots",
			Help: "Number of roots in the cacerts root bundle.",
		}, []string{"namespace", "name"}),
		LastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrust_cacerts_last_sync_timestamp_seconds",
			Help: "When a cacerts Secret was last written, as a Unix timestamp.",
		}),
		ValidationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_cacerts_validation_failures_total",
			Help: "Bundles or targets refused before writing cacerts, by failed check (a pki check such as key-usage, or a refusal reason such as UnmanagedCACerts).",
		}, []string{"check"}),
		CRLNextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrust_crl_next_update_timestamp_seconds",
			Help: "Earliest nextUpdate of the CRLs in the cacerts Secret's ca-crl.pem, as a Unix timestamp; proxies refuse the chains a CRL covers once it passes.",
		}, []string{"namespace", "name"}),
		CRLRevokedSerials: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrust_crl_revoked_serials",
			Help: "Distinct certificate serials revoked by the CRLs in the cacerts Secret's ca-crl.pem.",
		}, []string{"namespace", "name"}),
		CRLValidationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_crl_validation_failures_total",
			Help: "CRL inputs refused before writing ca-crl.pem, by failed check (crl-pem, crl-parse, crl-size, crl-issuer, crl-expired, crl-time, crl-extension, crl-number).",
		}, []string{"check"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Expiry, m.Syncs, m.Roots, m.LastSync, m.ValidationFailures, m.CRLNextUpdate, m.CRLRevokedSerials, m.CRLValidationFailures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
