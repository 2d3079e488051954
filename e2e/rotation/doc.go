// Package rotation proves a zero-downtime rotation of the shared root across
// clusters, on the real lab with a real istiod in each cluster: a second
// root is added in Vault, every cluster learns to trust it, the clusters
// move their intermediates to it one at a time, and the old root is
// retired, while workloads keep getting certificates from their istiods
// and calling each other over mutual TLS. At every step istiod's own
// behaviour is the proof: what it signs with and what it publishes.
//
// rotateroot_test.go drives the same rotation as one command, `meshtrust
// vault rotate-root`, run as its own process across three clusters and
// killed at every step (fleet_test.go holds its equipment);
// rotation_test.go proves the manual runbook that command automates. The
// benchmarks: bench_test.go (propagation of one renewal to istiod) and
// rotatebench_test.go (a whole rotation). The package has no product code.
package rotation
