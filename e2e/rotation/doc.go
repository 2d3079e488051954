// Package rotation proves a zero-downtime rotation of the shared root across
// clusters, on the real lab with a real istiod in each cluster: a second
// root is added in Vault, every cluster learns to trust it, the clusters
// move their intermediates to it one at a time, and the old root is
// retired, while workloads keep getting certificates from their istiods
// and calling each other over mutual TLS. At every step istiod's own
// behaviour is the proof: what it signs with and what it publishes.
//
// The test lives in rotation_test.go, the propagation benchmark in
// bench_test.go; the package has no product code.
package rotation
