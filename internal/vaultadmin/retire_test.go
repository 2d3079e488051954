package vaultadmin

import (
	"strings"
	"testing"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

func TestPolicyGrantsSigning(t *testing.T) {
	enrolled := vaultcontract.Policy{Cluster: "east", Mount: "pki", IssuerRef: "meshtrust-root", TrustDomain: "east.mesh", CommonName: "east istio intermediate CA"}.HCL()
	moved := vaultcontract.Policy{Cluster: "east", Mount: "pki", IssuerRef: "meshtrust-root-2", TrustDomain: "east.mesh", CommonName: "east istio intermediate CA"}.HCL()
	const id = "3c9a4f0e-5d1b-4c6e-9f1a-0b2c3d4e5f60"
	for _, tc := range []struct {
		name, policy string
		want         bool
	}{
		{"enroll's policy for the root", enrolled, true},
		{"enroll's policy after moving to root-2", moved, false},
		{"by issuer ID", `path "pki/issuer/` + id + `/sign-intermediate" { capabilities = ["update"] }`, true},
		{"create also signs", `path "pki/issuer/meshtrust-root/sign-intermediate" { capabilities = ["create"] }`, true},
		{"read only", `path "pki/issuer/meshtrust-root/sign-intermediate" { capabilities = ["read"] }`, false},
		{"issuer read for the health check", `path "pki/issuer/meshtrust-root" { capabilities = ["read"] }`, false},
		{"deny wins", `path "pki/issuer/meshtrust-root/sign-intermediate" { capabilities = ["update", "deny"] }`, false},
		{"glob under the issuer", `path "pki/issuer/meshtrust-root/*" { capabilities = ["update"] }`, true},
		{"glob on the sign prefix", `path "pki/issuer/meshtrust-root/sign-*" { capabilities = ["update"] }`, true},
		{"glob on another path of the issuer", `path "pki/issuer/meshtrust-root/revoke*" { capabilities = ["update"] }`, false},
		{"segment wildcard after the issuer", `path "pki/issuer/meshtrust-root/+" { capabilities = ["update"] }`, true},
		{"segment wildcard over every issuer", `path "pki/issuer/+/sign-intermediate" { capabilities = ["update"] }`, false},
		{"whole mount", `path "pki/*" { capabilities = ["update", "create", "sudo"] }`, false},
		{"other mount", `path "pki-eu/issuer/meshtrust-root/sign-intermediate" { capabilities = ["update"] }`, false},
		{"longer name sharing the prefix", `path "pki/issuer/meshtrust-root-2/sign-intermediate" { capabilities = ["update"] }`, false},
		{"leading slash", `path "/pki/issuer/meshtrust-root/sign-intermediate" { capabilities = ["update"] }`, true},
		{"old policy = write", `path "pki/issuer/meshtrust-root/sign-intermediate" { policy = "write" }`, true},
		{"old policy = read", `path "pki/issuer/meshtrust-root/sign-intermediate" { policy = "read" }`, false},
		{"JSON policy", `{"path": {"pki/issuer/meshtrust-root/sign-intermediate": {"capabilities": ["update"]}}}`, true},
		{"JSON policy, other issuer", `{"path": {"pki/issuer/other/sign-intermediate": {"capabilities": ["update"]}}}`, false},
		{"unparsable but names the issuer", `path "pki/issuer/meshtrust-root/sign-intermediate" { capabilities = [`, true},
		{"unparsable, unrelated", `path "secret/*" {`, false},
		{"empty", ``, false},
		{"default policy", `path "auth/token/lookup-self" { capabilities = ["read"] }`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PolicyGrantsSigning(tc.policy, "pki", "meshtrust-root", id); got != tc.want {
				t.Errorf("PolicyGrantsSigning = %v, want %v for:\n%s", got, tc.want, tc.policy)
			}
		})
	}
}

func FuzzPolicyGrantsSigning(f *testing.F) {
	f.Add(`path "pki/issuer/r/sign-intermediate" { capabilities = ["update"] }`, "r")
	f.Add(`path "pki/issuer/+/*" { policy = "write" }`, "r")
	f.Add(`{"path": {"pki/issuer/r/+": {"capabilities": ["create"]}}}`, "r")
	f.Fuzz(func(t *testing.T, policy, ref string) {
		PolicyGrantsSigning(policy, "pki", ref)
	})
}

func TestRetireBlockers(t *testing.T) {
	root1 := IssuerFacts{ID: "id-1", Name: "meshtrust-root", KeyID: "key-1", Root: true}
	root2 := IssuerFacts{ID: "id-2", Name: "meshtrust-root-2", KeyID: "key-2", Root: true}
	root3 := IssuerFacts{ID: "id-3", Name: "meshtrust-root-3", KeyID: "key-3", Root: true}
	inter := IssuerFacts{ID: "id-i", Name: "intermediate", KeyID: "key-i"}
	for _, tc := range []struct {
		name string
		f    RetireFacts
		o    RetireOptions
		want []string // one substring per expected reason, in order
	}{
		{"ready", RetireFacts{Target: root1, DefaultID: "id-2", Others: []IssuerFacts{root2}}, RetireOptions{}, nil},
		{"still default", RetireFacts{Target: root1, DefaultID: "id-1", Others: []IssuerFacts{root2}}, RetireOptions{},
			[]string{"it is the default issuer of pki/: make the new root the default first with `meshtrust vault bootstrap --issuer-name meshtrust-root-2`"}},
		{"still default, two candidates", RetireFacts{Target: root1, DefaultID: "id-1", Others: []IssuerFacts{root2, root3}}, RetireOptions{},
			[]string{"--issuer-name <new>`"}},
		{"still default, other mount", RetireFacts{Mount: "pki-eu", Target: root1, DefaultID: "id-1", Others: []IssuerFacts{root2}}, RetireOptions{},
			[]string{"--issuer-name meshtrust-root-2 --mount pki-eu`"}},
		{"only root", RetireFacts{Target: root1, DefaultID: "id-1", Others: []IssuerFacts{inter}}, RetireOptions{},
			[]string{"it is the only root issuer of pki/"}},
		{"only issuer, not default", RetireFacts{Target: root1}, RetireOptions{}, []string{"only root issuer"}},
		{"only trust anchor, beside a stray root", RetireFacts{Target: root1, DefaultID: "id-s",
			Others: []IssuerFacts{{ID: "id-s", Name: "stray", Root: true}, {ID: "id-a", Name: "anchor-intermediate", Anchor: true}}}, RetireOptions{},
			[]string{"it is the only root issuer of pki/"}},
		{"another trust anchor", RetireFacts{Target: root1, DefaultID: "id-2",
			Others: []IssuerFacts{{ID: "id-s", Name: "stray", Root: true}, {ID: "id-2", Name: "meshtrust-root-2", Root: true, Anchor: true}}}, RetireOptions{}, nil},
		{"one policy", RetireFacts{Target: root1, DefaultID: "id-2", Others: []IssuerFacts{root2}, GrantingPolicies: []string{"meshtrust-kind3"}}, RetireOptions{},
			[]string{"ACL policy meshtrust-kind3 still grants sign-intermediate on pki/issuer/meshtrust-root: re-enroll that cluster with `meshtrust vault enroll ... --issuer-ref meshtrust-root-2`, or pass --force"}},
		{"default and two policies", RetireFacts{Target: root1, DefaultID: "id-1", Others: []IssuerFacts{root2}, GrantingPolicies: []string{"meshtrust-kind2", "meshtrust-kind3"}}, RetireOptions{},
			[]string{"default issuer", "ACL policies meshtrust-kind2, meshtrust-kind3 still grant sign-intermediate on pki/issuer/meshtrust-root: re-enroll those clusters"}},
		{"not a root", RetireFacts{Target: inter, DefaultID: "id-2", Others: []IssuerFacts{root2}}, RetireOptions{},
			[]string{"issuer intermediate is not a root"}},
		{"shared key with --delete-key", RetireFacts{Target: root1, DefaultID: "id-2", Others: []IssuerFacts{root2, {ID: "id-x", Name: "reissued", KeyID: "key-1", Root: true}}},
			RetireOptions{DeleteKey: true}, []string{"its key key-1 is also the key of issuer reissued: drop --delete-key"}},
		{"shared key without --delete-key", RetireFacts{Target: root1, DefaultID: "id-2", Others: []IssuerFacts{root2, {ID: "id-x", Name: "reissued", KeyID: "key-1", Root: true}}},
			RetireOptions{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.f.Mount == "" {
				tc.f.Mount = "pki"
			}
			got := RetireBlockers(tc.f, tc.o)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d reasons %q, want %d", len(got), got, len(tc.want))
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("reason %d = %q, want it to contain %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestRetireOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    RetireOptions
		want string
	}{
		{RetireOptions{Mount: "pki", IssuerName: "meshtrust-root"}, ""},
		{RetireOptions{Mount: "pki"}, "--issuer-name is required"},
		{RetireOptions{Mount: "pki", IssuerName: "default"}, `invalid --issuer-name "default"`},
		{RetireOptions{Mount: "pki", IssuerName: "a/b"}, "no slash"},
		{RetireOptions{Mount: "/pki", IssuerName: "r"}, `invalid --mount "/pki"`},
	} {
		err := tc.o.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestRefusedErrorIsOneLine(t *testing.T) {
	err := &RefusedError{Addr: "https://vault:8200", Mount: "pki", IssuerName: "meshtrust-root",
		Reasons: RetireBlockers(RetireFacts{Mount: "pki", Target: IssuerFacts{ID: "a", Name: "meshtrust-root", Root: true}, DefaultID: "a",
			Others: []IssuerFacts{{ID: "b", Name: "meshtrust-root-2", Root: true}}, GrantingPolicies: []string{"meshtrust-kind3"}}, RetireOptions{})}
	msg := err.Error()
	for _, want := range []string{"vault at https://vault:8200", "refusing to retire issuer meshtrust-root of pki/", "nothing changed", "default issuer", "meshtrust-kind3"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}
