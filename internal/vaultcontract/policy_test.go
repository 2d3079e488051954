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
