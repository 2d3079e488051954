package vaultadmin

import (
	"fmt"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// NotOwnedError refuses to change an auth mount enroll did not create for
// the cluster: disabling or reconfiguring it would cut off whoever else logs
// in through it.
type NotOwnedError struct {
	// Addr is the Vault address.
	Addr string
	// Mount is the auth mount path without "auth/".
	Mount string
	// Action is what was refused, e.g. "disable".
	Action string
	// Reason says why the mount is not the cluster's, and what to do.
	Reason string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("vault at %s: refusing to %s auth/%s/: %s", e.Addr, e.Action, e.Mount, e.Reason)
}

// authMountProblem says why m is not an auth mount the cluster may use with
// kind, or "" when it is. With owned, it must also be the mount enroll
// created for cluster, which only a per-cluster kubernetes mount can be.
func authMountProblem(m *vaultapi.MountOutput, kind AuthKind, cluster string, owned bool) string {
	want := vaultcontract.AuthMountDescription(cluster)
	switch {
	case m == nil:
		return "it does not exist"
	case m.Type != string(kind):
		return fmt.Sprintf("it is a %q auth method, not %s", m.Type, kind)
	case owned && m.Description != want:
		return fmt.Sprintf("its description is %q, not %q, so enroll did not create it for cluster %s", m.Description, want, cluster)
	}
	return ""
}

// authMountDescription is what enroll writes on a mount it creates.
func authMountDescription(kind AuthKind, cluster string) string {
	if kind == AuthKubernetes {
		return vaultcontract.AuthMountDescription(cluster)
	}
	return vaultcontract.AppRoleMountDescription
}
