// Package lab starts a real multi-cluster test bed on 127.0.0.1: one Vault
// server process and N Kubernetes clusters, each a real kube-apiserver and
// etcd (through envtest) with cert-manager's own controllers running
// in-process.
//
// Nothing in the lab is faked. The binaries come from `make tools`, which
// builds them from the Go module proxy into bin/tools/<name>-<version>/.
// Every child process gets a parent-death signal, so a test binary that is
// killed leaves nothing behind.
package lab
