package vault

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Vault and issuance counters of the issuer. They live in a
// struct, not in package variables, so that tests and the manager each own a
// registry.
type Metrics struct {
	// Requests counts Vault HTTP calls by operation and HTTP status code
	// ("error" when no response arrived).
	Requests *prometheus.CounterVec
	// Duration observes the latency of Vault HTTP calls by operation.
	Duration *prometheus.HistogramVec
	// Logins counts successful and failed Vault logins by auth method.
	Logins *prometheus.CounterVec
	// Signed counts certificates issued, by kind ("intermediate" or "leaf").
	Signed *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them with reg. A nil reg
// leaves them unregistered, which suits unit tests.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_vault_requests_total",
			Help: "Vault HTTP requests made by the issuer, by operation and HTTP status code.",
		}, []string{"op", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshtrust_vault_request_duration_seconds",
			Help:    "Latency of Vault HTTP requests made by the issuer, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"op"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_vault_logins_total",
			Help: "Vault logins attempted by the issuer, by auth method.",
		}, []string{"method"}),
		Signed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_issuer_certificates_signed_total",
			Help: "Certificates signed through Vault by the issuer, by kind (intermediate or leaf).",
		}, []string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Requests, m.Duration, m.Logins, m.Signed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering issuer metrics: %w", err)
		}
	}
	return m, nil
}
