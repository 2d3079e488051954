// Package deploy tests the Helm chart in deploy/charts/meshtrust: that it
// lints and renders with every toggle, that deploy/manifests and the chart's
// CRDs are up to date, that a real API server accepts every object, and that
// the RBAC it grants is both sufficient for the controllers' real flows and
// no larger than they need, proven by impersonating the chart's
// ServiceAccount against a lab cluster.
//
// helm.go is the only non-test file: it locates the helm binary the way the
// lab locates its tools, and may move into e2e/lab.
package deploy
