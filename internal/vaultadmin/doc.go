// Package vaultadmin is meshtrust's Vault administration library: bootstrap
// the shared root in a PKI mount, enrol a cluster (its auth, a policy that
// pins its trust domain, the Kubernetes objects its login needs, and the
// manifests it applies), unenrol it, revoke its intermediates, and retire an
// old root. The meshtrust CLI drives it; an operator or a GitOps job can
// import it.
//
// Every operation is split in two, the way terraform splits plan and apply:
// PlanX only reads Vault (and the cluster) and returns a Plan that lists
// each step in order, with what it finds now (Before), what it will leave
// (After) and whether it changes anything; Apply carries that Plan out and
// reports the same steps as they ran. A dry run is a Plan that is never
// applied. Running an operation twice changes nothing the second time.
//
// What a cluster may sign, and the names both halves agree on, come from
// internal/vaultcontract. Errors name the Vault address and the cause on one
// line; Vault tokens, reviewer JWTs and AppRole secret IDs never appear in
// errors, plans or results.
package vaultadmin
