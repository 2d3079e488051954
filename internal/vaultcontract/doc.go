// Package vaultcontract is the one place that says what an enrolled cluster
// may sign in Vault, and how the issuer asks for it.
//
// meshtrust's security rests on two halves agreeing: the request the issuer
// sends to Vault's PKI engine (issuer/, through SignRequest) and the ACL
// policy `meshtrust vault enroll` writes for the cluster (Policy). Both are
// built here, from the same parameter names, paths, names and value types,
// so that neither half can change alone. contract_test.go proves the
// agreement offline: the Certificate enrol's manifests render goes through
// the issuer's request builder, and the body is evaluated against the HCL
// policy enrol renders, the way Vault's ACL evaluates it. The e2e/cli test
// proves it again against a real Vault.
//
// The package also owns what else both sides name: the trust-domain syntax
// (the CRD's pattern is tested against ValidateTrustDomain), the cluster's
// policy, role, auth mount, audience and CN, the opt-in annotation and the
// Kubernetes signer name.
package vaultcontract
