package workload

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// CheckRevocation is Envoy's rule, restated; this pins down each of its
// cases, so that a lab test refusing or accepting a workload through it
// refuses or accepts for the reason Envoy would.
func TestCheckRevocation(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(365 * 24 * time.Hour)}, nil)
	inter := pkitest.New(t, now, pkitest.Spec{CN: "kind3 intermediate"}, root)
	impostor := pkitest.New(t, now, pkitest.Spec{CN: "kind3 intermediate"}, root) // same name, other key
	leaf := pkitest.New(t, now, pkitest.Spec{CN: "workload", NotCA: true}, inter)
	chain := []*x509.Certificate{leaf.Cert, inter.Cert, root.Cert}
	rootCRL := root.CRL(t, now, pkitest.CRLSpec{})
	interCRL := inter.CRL(t, now, pkitest.CRLSpec{})
	expired := pkitest.CRLSpec{ThisUpdate: now.Add(-48 * time.Hour), NextUpdate: now.Add(-time.Hour)}
	tests := []struct {
		name string
		crls []*x509.RevocationList
		want string
	}{
		{"every CA has a CRL, nothing revoked", []*x509.RevocationList{rootCRL, interCRL}, ""},
		{"the intermediate's CRL is missing", []*x509.RevocationList{rootCRL}, "unable to get certificate CRL: no CRL of \"CN=kind3 intermediate\""},
		{"the root's CRL is missing", []*x509.RevocationList{interCRL}, "unable to get certificate CRL: no CRL of \"CN=root\""},
		{"the intermediate is revoked", []*x509.RevocationList{root.CRL(t, now, pkitest.CRLSpec{Revoked: []*x509.Certificate{inter.Cert}}), interCRL}, "certificate revoked: \"CN=kind3 intermediate\""},
		{"the leaf is revoked", []*x509.RevocationList{rootCRL, inter.CRL(t, now, pkitest.CRLSpec{Revoked: []*x509.Certificate{leaf.Cert}})}, "certificate revoked: \"CN=workload\""},
		{"an expired CRL refuses every chain it covers", []*x509.RevocationList{root.CRL(t, now, expired), interCRL}, "CRL has expired"},
		{"a valid CRL wins over an expired one", []*x509.RevocationList{root.CRL(t, now, expired), rootCRL, interCRL}, ""},
		{"a CRL of the same name under another key is no CRL", []*x509.RevocationList{rootCRL, impostor.CRL(t, now, pkitest.CRLSpec{})}, "unable to get certificate CRL"},
		{"the newest CRL decides", []*x509.RevocationList{rootCRL, interCRL, root.CRL(t, now, pkitest.CRLSpec{ThisUpdate: now, Revoked: []*x509.Certificate{inter.Cert}})}, "certificate revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRevocation(chain, tt.crls, now)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
