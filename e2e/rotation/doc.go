// Package rotation proves a zero-downtime rotation of the shared root across
// clusters, on the real lab: a second root is added in Vault, every cluster
// learns to trust it, the clusters move their intermediates to it one at a
// time, and the old root is retired, while mutual-TLS handshakes between the
// clusters run the whole time.
//
// The test lives in rotation_test.go; the package has no product code.
package rotation
