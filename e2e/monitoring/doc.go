// Package monitoring proves meshtrust's alert rules and Grafana dashboard
// (deploy/charts/meshtrust/files) against a real Prometheus, built from the
// Go module proxy by `make prometheus`:
//
//   - promtool unit-tests every rule with series fixtures
//     (testdata/alerts_test.yaml);
//   - the chart's PrometheusRule holds exactly the plain rules file;
//   - every metric a rule or a dashboard query names is one that
//     meshtrust-controller's manager registers;
//   - every alert has a runbook entry in deploy/README.md;
//   - on a lab cluster, a real Prometheus scrapes the real
//     meshtrust-controller binary and an expiring intermediate that cannot
//     renew while Vault is stopped fires MeshtrustCACertsExpiringSoon, which
//     resolves once Vault is back and the renewal reaches cacerts.
//
// prometheus.go, the only non-test file, runs a Prometheus server on
// 127.0.0.1 and reads its HTTP API.
package monitoring
