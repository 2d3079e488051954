// Package lab starts a real multi-cluster test bed on 127.0.0.1: one Vault
// server process and N Kubernetes clusters, each a real kube-apiserver and
// etcd (through envtest) with cert-manager's own controllers running
// in-process and, with Options.Istiod, a real istiod process.
//
// Nothing in the lab is faked. The binaries come from `make tools`, which
// builds them from the Go module proxy into bin/tools/<name>-<version>/.
// kubelet's one job the lab needs, mounting a Secret or ConfigMap as files
// for istiod, is done by a Projector with kubelet's atomic layout. Every
// child process gets a parent-death signal, so a test binary that is killed
// leaves nothing behind.
package lab
