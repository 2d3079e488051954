package vaultcontract

import (
	"strings"
	"testing"
)

func TestRenderPolicy(t *testing.T) {
	o := Policy{Cluster: "east", Mount: "pki", IssuerRef: "meshtrust-root", TrustDomain: "east.mesh", CommonName: "east istio intermediate CA"}
	got := o.HCL()
	for _, want := range []string{
		`path "pki/issuer/meshtrust-root/sign-intermediate" {`,
		`capabilities = ["update"]`,
		`required_parameters = ["common_name", "max_path_length", "permitted_uri_domains"]`,
		`"permitted_uri_domains" = ["east.mesh"]`,
		`"max_path_length" = ["0"]`,
		`"common_name" = ["east istio intermediate CA"]`,
		`"csr" = []`,
		`"permitted_uri_domains" = ["", []]`,
		`path "pki/issuer/meshtrust-root" {` + "\n" + `  capabilities = ["read"]`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("policy lacks %q:\n%s", want, got)
		}
	}
	for _, want := range []string{`"use_csr_values" = [false]`, `"uri_sans" = ["spiffe://east.mesh"]`} {
		if !strings.Contains(got, want) {
			t.Errorf("policy lacks %q:\n%s", want, got)
		}
	}
	for _, never := range []string{"use_csr_values\" = [true", "permitted_dns_domains", "issuer_ref", `"*"`, "sudo"} {
		if strings.Contains(got, never) {
			t.Errorf("policy mentions %q:\n%s", never, got)
		}
	}
	if strings.Count(got, `capabilities = ["update"]`) != 1 {
		t.Errorf("policy grants update on more than one path:\n%s", got)
	}
	// Writes beyond the sign path: the cluster's own CRL exchange entry,
	// and nothing else.
	if strings.Count(got, `"create"`) != 1 || !strings.Contains(got, `path "meshtrust-crl/east.mesh" {`+"\n"+`  capabilities = ["create", "update", "read"]`) ||
		!strings.Contains(got, `path "meshtrust-crl/*" {`+"\n"+`  capabilities = ["read", "list"]`) {
		t.Errorf("policy does not limit the CRL exchange to writing its own entry:\n%s", got)
	}

	o.IssuerRef = ""
	if got := o.HCL(); !strings.Contains(got, `path "pki/root/sign-intermediate"`) || !strings.Contains(got, `path "pki/issuer/default"`) {
		t.Errorf("empty issuer ref should use root/sign-intermediate and read the default issuer:\n%s", got)
	}
}

// What enrol writes reads back as what it was written from, for either
// sign path; that is how enrol and status learn what is enrolled.
func TestReadPoliciesRoundTrip(t *testing.T) {
	for _, p := range []Policy{
		{Cluster: "east", Mount: "pki", IssuerRef: "meshtrust-root", TrustDomain: "east.mesh", CommonName: "east istio intermediate CA"},
		{Cluster: "west", Mount: "pki/eu", TrustDomain: "west.mesh", CommonName: "west CA"},
		{Cluster: `odd "name"`, Mount: "pki", IssuerRef: "3c9a4f0e-5d1b-4c6e-9f1a-0b2c3d4e5f60", TrustDomain: "mesh", CommonName: "c"},
	} {
		got := ReadPolicies(p.HCL())
		if len(got) != 1 || got[0] != p {
			t.Errorf("ReadPolicies(HCL of %+v) = %+v", p, got)
		}
	}
}

func TestReadPolicies(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // trust domains
	}{
		{"hand-written, two domains", `path "pki/issuer/r/sign-intermediate" {
  capabilities = ["update"]
  allowed_parameters = { "permitted_uri_domains" = ["a.mesh", "b.mesh"] }
}`, []string{"a.mesh", "b.mesh"}},
		{"create signs too", `path "pki/root/sign-intermediate" {
  capabilities = ["create"]
  allowed_parameters = { "permitted_uri_domains" = ["a.mesh"] }
}`, []string{"a.mesh"}},
		{"read only", `path "pki/root/sign-intermediate" {
  capabilities = ["read"]
  allowed_parameters = { "permitted_uri_domains" = ["a.mesh"] }
}`, nil},
		{"deny", `path "pki/root/sign-intermediate" {
  capabilities = ["update", "deny"]
  allowed_parameters = { "permitted_uri_domains" = ["a.mesh"] }
}`, nil},
		{"not a sign path", `path "pki/issue/r" {
  capabilities = ["update"]
  allowed_parameters = { "permitted_uri_domains" = ["a.mesh"] }
}`, nil},
		{"wildcard issuer", `path "pki/issuer/+/sign-intermediate" {
  capabilities = ["update"]
  allowed_parameters = { "permitted_uri_domains" = ["a.mesh"] }
}`, nil},
		{"nothing pinned", `path "pki/root/sign-intermediate" { capabilities = ["update"] }`, nil},
		{"unparsable", `path "pki/root/sign-intermediate" {`, nil},
		{"JSON", `{"path": {"pki/root/sign-intermediate": {"capabilities": ["update"], "allowed_parameters": {"permitted_uri_domains": ["j.mesh"]}}}}`, []string{"j.mesh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range ReadPolicies(tc.text) {
				got = append(got, p.TrustDomain)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("trust domains %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzReadPolicies(f *testing.F) {
	f.Add(Policy{Cluster: "east", Mount: "pki", IssuerRef: "r", TrustDomain: "east.mesh", CommonName: "c"}.HCL())
	f.Add(`{"path": {"pki/root/sign-intermediate": {"capabilities": ["update"], "allowed_parameters": {"permitted_uri_domains": ["j.mesh"]}}}}`)
	f.Fuzz(func(t *testing.T, text string) {
		for _, p := range ReadPolicies(text) {
			if p.TrustDomain == "" || p.Mount == "" {
				t.Fatalf("read an empty trust domain or mount: %+v", p)
			}
		}
	})
}

func TestAnchorChain(t *testing.T) {
	if got := AnchorChain("b", []string{"a", "b", "c"}); strings.Join(got, ",") != "b,a,c" {
		t.Errorf("AnchorChain = %v, want b first (Vault requires it), then the others in order", got)
	}
	if got := AnchorChain("a", nil); strings.Join(got, ",") != "a" {
		t.Errorf("AnchorChain of a lone root = %v", got)
	}
	if got := IssuerJSONPath("pki", ""); got != "pki/issuer/default/json" {
		t.Errorf("IssuerJSONPath of the default issuer = %q", got)
	}
}
