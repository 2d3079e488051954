// Package rotation moves a fleet of enrolled clusters from one shared root
// (A, --from) to another (B, --to) without a moment in which two clusters
// cannot talk, and back again (rollback) until A is dropped. It is the
// library behind `meshtrust vault rotate-root`.
//
// The phases, each done only when every cluster shows it:
//
//  1. root-added: B exists in the PKI mount, not the default.
//  2. both-trusted: every cluster's cacerts root-cert.pem and the
//     istio-ca-root-cert its istiod publishes hold A and B; intermediates
//     are still signed by A.
//  3. intermediates-moved: every cluster's policy signs only under B, its
//     VaultClusterIssuer names B, and its cacerts intermediate is signed by
//     B (one cluster at a time).
//  4. default-switched: B is the mount's default issuer.
//  5. old-root-dropped: after the wait (at least one workload-certificate
//     lifetime after the last cluster moved), A's issuer is deleted from
//     Vault and every cluster is renewed, so no ca.crt carries A. The syncer
//     keeps A in root-cert.pem for its meshtrust.io/root-grace.
//  6. old-root-retired: A is gone from every root-cert.pem and from every
//     istiod's istio-ca-root-cert.
//
// There is no state file: each run reads Vault and every cluster, derives
// where the fleet stands (Derive, a pure function) and takes the first step
// still missing (Next). Every step is idempotent, so a run killed anywhere
// is continued by the next one. The one fact observation cannot give back,
// when the last cluster moved to B (the wait's start), is written as an
// annotation on each cluster's intermediate Certificate when it is first
// seen, so a crash can only make the wait longer. `meshtrust status` shows
// that annotation as the cluster's rotation phase.
package rotation
