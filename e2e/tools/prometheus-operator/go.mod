// Module prometheus-operator pins the prometheus-operator release whose CRDs
// (example/prometheus-operator-crd in its module) e2e/deploy serves on the
// lab's API server, so that the chart's ServiceMonitor and PrometheusRule
// are checked against prometheus-operator's own schemas. Nothing is built
// from it.
module github.com/meshtrust/meshtrust/e2e/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
