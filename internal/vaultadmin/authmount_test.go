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

// Unenrol removes what it found of the cluster, whichever auth method:
// its own kubernetes mount is disabled (unless kept), and every other role
// of the cluster is deleted, an AppRole role with its secret IDs.
func TestUnenrollPlansWhatItFound(t *testing.T) {
	own := authMount{path: "kubernetes-east/", out: &vaultapi.MountOutput{Type: "kubernetes", Description: vaultcontract.AuthMountDescription("east")}}
	found := &enrolment{
		ownMounts: []authMount{own},
		roles: []authRole{
			{mount: "kubernetes-east/", name: "meshtrust-east", kind: "kubernetes", policies: []string{"meshtrust-east"}},
			{mount: "approle/", name: "meshtrust-east", kind: "approle", policies: []string{"meshtrust-east"}, secretIDs: 2},
			{mount: "approle-team/", name: "legacy", kind: "approle", policies: []string{"default", "meshtrust-east"}},
		},
	}
	for _, tc := range []struct {
		name    string
		disable bool
		want    []string // changed steps, in order
	}{
		{"mount disabled", true, []string{"auth mount kubernetes-east/", "auth/approle/role/meshtrust-east", "auth/approle-team/role/legacy"}},
		{"mount kept", false, []string{"auth/kubernetes-east/role/meshtrust-east", "auth/approle/role/meshtrust-east", "auth/approle-team/role/legacy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &UnenrollPlan{}
			p.planAuth(&Client{}, UnenrollOptions{Cluster: "east", Role: "meshtrust-east", PolicyName: "meshtrust-east", DisableAuthMount: tc.disable}, found)
			var got []string
			for _, s := range p.Steps {
				if s.Changed {
					got = append(got, s.Name)
				}
				if s.Name == "auth/approle/role/meshtrust-east" && !strings.Contains(s.Before, "2 secret ID(s)") {
					t.Errorf("the AppRole step does not say its secret IDs go: %+v", s)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("changes %v, want %v", got, tc.want)
			}
		})
	}
	p := &UnenrollPlan{}
	p.planAuth(&Client{}, UnenrollOptions{Cluster: "east", Role: "meshtrust-east", PolicyName: "meshtrust-east", DisableAuthMount: true}, &enrolment{})
	if p.Changed || len(p.Steps) != 1 {
		t.Errorf("nothing found, yet %+v", p.Steps)
	}
}
