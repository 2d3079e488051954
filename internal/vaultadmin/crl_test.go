package vaultadmin

import (
	"math/big"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// Commands that take only --cluster read the trust domain back from the
// policy enrol wrote; the two must agree for every policy enrol renders.
func TestPolicyTrustDomainReadsEnrolsPolicy(t *testing.T) {
	for _, td := range []string{"kind2", "east.mesh", "a-b.west.example"} {
		p := vaultcontract.Policy{Cluster: "c", Mount: "pki", IssuerRef: "meshtrust-root", TrustDomain: td, CommonName: "c istio intermediate CA"}
		if got := PolicyTrustDomain(p.HCL()); got != td {
			t.Errorf("policy for %s gives %q", td, got)
		}
	}
	for name, text := range map[string]string{
		"empty":      "",
		"not HCL":    "path {",
		"no pin":     `path "pki/issuer/r/sign-intermediate" { capabilities = ["update"] }`,
		"no grant":   `path "pki/issuer/r/sign-intermediate" { allowed_parameters = { "permitted_uri_domains" = ["a"] } }`,
		"two pinned": `path "pki/issuer/r/sign-intermediate" { capabilities = ["update"] allowed_parameters = { "permitted_uri_domains" = ["a", "b"] } }`,
	} {
		if got := PolicyTrustDomain(text); got != "" {
			t.Errorf("%s: got %q, want none", name, got)
		}
	}
}

// Vault lists serials as "0f-a3-..." and shows them as "0f:a3:..."; the
// CRL holds the number.
func TestSerialHexMatchesRevokedSerials(t *testing.T) {
	n := new(big.Int).SetBytes([]byte{0x00, 0x0f, 0xa3, 0x10})
	for _, in := range []string{"00-0f-a3-10", "00:0f:a3:10", "0F:A3:10"} {
		if got := serialHex(in); got != n.Text(16) {
			t.Errorf("serialHex(%q) = %q, want %q", in, got, n.Text(16))
		}
	}
}

func TestCRLConfigValidation(t *testing.T) {
	o := BootstrapOptions{Mount: "pki", IssuerName: "r", KeyType: "ec", TTL: 87600 * time.Hour, MaxIntermediateTTL: 2160 * time.Hour}
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	o.CRLExpiry, o.CRLRebuildGrace = DefaultCRLRebuildGrace, DefaultCRLRebuildGrace
	if err := o.Validate(); err == nil {
		t.Error("a rebuild grace as long as the expiry was accepted")
	}
}
