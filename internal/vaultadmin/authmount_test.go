package vaultadmin

import (
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

func TestAuthMountProblem(t *testing.T) {
	east := vaultcontract.AuthMountDescription("east")
	for _, tc := range []struct {
		name  string
		m     *vaultapi.MountOutput
		kind  AuthKind
		owned bool
		why   string // empty: the mount may be used
	}{
		{name: "east's own kubernetes mount", m: &vaultapi.MountOutput{Type: "kubernetes", Description: east}, kind: AuthKubernetes, owned: true},
		{name: "shared approle mount, role only", m: &vaultapi.MountOutput{Type: "approle", Description: "meshtrust"}, kind: AuthAppRole},
		{name: "someone's approle mount, role only", m: &vaultapi.MountOutput{Type: "approle"}, kind: AuthAppRole},
		{name: "approle mount named as kubernetes", m: &vaultapi.MountOutput{Type: "approle", Description: "meshtrust"}, kind: AuthKubernetes, owned: true, why: `it is a "approle" auth method, not kubernetes`},
		{name: "kubernetes mount with role-only approle", m: &vaultapi.MountOutput{Type: "kubernetes", Description: east}, kind: AuthAppRole, why: `"kubernetes" auth method, not approle`},
		{name: "west's mount", m: &vaultapi.MountOutput{Type: "kubernetes", Description: vaultcontract.AuthMountDescription("west")}, kind: AuthKubernetes, owned: true, why: `not "meshtrust: cluster east", so enroll did not create it for cluster east`},
		{name: "unmarked kubernetes mount", m: &vaultapi.MountOutput{Type: "kubernetes"}, kind: AuthKubernetes, owned: true, why: `its description is ""`},
		{name: "cluster name is a prefix", m: &vaultapi.MountOutput{Type: "kubernetes", Description: vaultcontract.AuthMountDescription("east2")}, kind: AuthKubernetes, owned: true, why: "did not create it"},
		{name: "shared approle mount to disable", m: &vaultapi.MountOutput{Type: "approle", Description: "meshtrust"}, kind: AuthAppRole, owned: true, why: "did not create it"},
		{name: "unmarked kubernetes mount, role only", m: &vaultapi.MountOutput{Type: "kubernetes"}, kind: AuthKubernetes},
		{name: "missing", kind: AuthKubernetes, why: "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why := authMountProblem(tc.m, tc.kind, "east", tc.owned)
			switch {
			case tc.why == "" && why != "":
				t.Errorf("got %q, want no problem", why)
			case tc.why != "" && !strings.Contains(why, tc.why):
				t.Errorf("got %q, want it to contain %q", why, tc.why)
			}
		})
	}
}

func TestUnenrollCheckMount(t *testing.T) {
	approle := &vaultapi.MountOutput{Type: "approle", Description: "meshtrust"}
	for _, tc := range []struct {
		name string
		o    UnenrollOptions
		m    *vaultapi.MountOutput
		want string // empty: allowed
	}{
		{name: "the review's case: shared approle named with the default --auth",
			o: UnenrollOptions{Cluster: "east", Auth: AuthKubernetes, AuthMount: "approle", DisableAuthMount: true}, m: approle,
			want: `vault at https://vault:8200: refusing to disable auth/approle/: it is a "approle" auth method, not kubernetes; pass the --auth the cluster was enrolled with (--auth approle deletes only the role)`},
		{name: "another cluster's kubernetes mount",
			o:    UnenrollOptions{Cluster: "east", Auth: AuthKubernetes, AuthMount: "kubernetes-west", DisableAuthMount: true},
			m:    &vaultapi.MountOutput{Type: "kubernetes", Description: vaultcontract.AuthMountDescription("west")},
			want: `refusing to disable auth/kubernetes-west/: its description is "meshtrust: cluster west", not "meshtrust: cluster east", so enroll did not create it for cluster east; pass --keep-auth-mount to delete only the role`},
		{name: "own kubernetes mount",
			o: UnenrollOptions{Cluster: "east", Auth: AuthKubernetes, AuthMount: "kubernetes-east", DisableAuthMount: true},
			m: &vaultapi.MountOutput{Type: "kubernetes", Description: vaultcontract.AuthMountDescription("east")}},
		{name: "role in the shared approle mount",
			o: UnenrollOptions{Cluster: "east", Auth: AuthAppRole, AuthMount: "approle"}, m: approle},
		{name: "role in an unmarked kubernetes mount, mount kept",
			o: UnenrollOptions{Cluster: "east", Auth: AuthKubernetes, AuthMount: "k8s"}, m: &vaultapi.MountOutput{Type: "kubernetes"}},
		{name: "role in a mount of another type",
			o: UnenrollOptions{Cluster: "east", Auth: AuthKubernetes, AuthMount: "approle"}, m: approle,
			want: "refusing to delete a role in auth/approle/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.checkMount("https://vault:8200", tc.m)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want allowed", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}
