// Package vaultops holds what `meshtrust vault ...` does to Vault: bootstrap
// the shared root in a PKI mount, enrol a cluster (auth role plus a policy
// that pins its trust domain), and unenrol it.
//
// Every operation reads before it writes, so that running it twice changes
// nothing the second time and reports each step as changed or unchanged.
// Errors name the Vault address and the cause on one line; Vault tokens and
// AppRole secret IDs never appear in errors or results.
package vaultops
