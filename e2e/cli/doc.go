// Package cli holds the end-to-end tests of the meshtrust CLI against the
// lab: a real Vault in dev mode and real kube-apiservers. They run the CLI
// in-process through cmd/meshtrust/app, exactly as the binary does.
package cli
