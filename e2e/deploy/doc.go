// Package deploy tests the Helm chart in deploy/charts/meshtrust: that it
// lints and renders with every toggle, that deploy/manifests and the chart's
// CRDs are up to date, that a real API server accepts every object, that the
// RBAC it grants is both sufficient for the controllers' real flows and no
// larger than they need, proven by impersonating the chart's ServiceAccount
// against a lab cluster, and that a release of the previous chart
// (testdata/meshtrust-0.1.0) upgrades to this one, CRDs included, with the
// real helm binary.
//
// helm.go is the only non-test file: it locates the helm binary the way the
// lab locates its tools, and may move into e2e/lab.
package deploy
