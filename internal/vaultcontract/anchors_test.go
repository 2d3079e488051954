package vaultcontract

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// The issuer builds ca.crt from TrustAnchors and hands the syncer the CRLs
// of CRLIssuers; the CLI compares clusters with the same CRLs. A stray
// self-signed issuer of the mount is in no issuer's ca_chain, so it gives
// neither.
func TestTrustAnchorsAndCRLIssuers(t *testing.T) {
	now := pkitest.RandomNow(t)
	a := pkitest.New(t, now.Add(-2*time.Hour), pkitest.Spec{CN: "root A", NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(time.Hour)}, nil)
	b := pkitest.New(t, now, pkitest.Spec{CN: "root B", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour)}, nil)
	expired := pkitest.New(t, now, pkitest.Spec{CN: "expired root", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, nil)
	inter := pkitest.New(t, now, pkitest.Spec{CN: "vault intermediate", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}, a)
	names := func(cs []*x509.Certificate) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Subject.CommonName)
		}
		return strings.Join(out, ", ")
	}
	for _, tc := range []struct {
		name          string
		issuer        *pkitest.Cert
		chain         []*pkitest.Cert
		anchors, crls string
	}{
		{"a lone root", a, []*pkitest.Cert{a}, "root A", "root A"},
		{"during a rotation, on A", a, []*pkitest.Cert{a, b}, "root A, root B", "root A, root B"},
		{"during a rotation, on B", b, []*pkitest.Cert{b, a}, "root A, root B", "root A, root B"},
		{"an expired anchor left in the chain", b, []*pkitest.Cert{b, expired}, "root B", "root B"},
		{"a Vault-held intermediate signs", inter, []*pkitest.Cert{inter, a}, "root A", "root A, vault intermediate"},
		{"a chain Vault did not fill in", b, nil, "root B", "root B"},
	} {
		var chain []*x509.Certificate
		for _, c := range tc.chain {
			chain = append(chain, c.Cert)
		}
		if got := names(TrustAnchors(tc.issuer.Cert, chain, now)); got != tc.anchors {
			t.Errorf("%s: TrustAnchors = %q, want %q", tc.name, got, tc.anchors)
		}
		if got := names(CRLIssuers(tc.issuer.Cert, chain, now)); got != tc.crls {
			t.Errorf("%s: CRLIssuers = %q, want %q", tc.name, got, tc.crls)
		}
	}
}

func TestFindIssuers(t *testing.T) {
	now := pkitest.RandomNow(t)
	a := pkitest.New(t, now, pkitest.Spec{CN: "root A"}, nil).Cert
	b := pkitest.New(t, now, pkitest.Spec{CN: "root B"}, nil).Cert
	stray := pkitest.New(t, now, pkitest.Spec{CN: "stray"}, nil).Cert
	mount := map[string]*x509.Certificate{"1": stray, "2": b, "3": nil, "4": a, "5": stray}
	var read []string
	find := func(want ...*x509.Certificate) []string {
		read = nil
		got, err := FindIssuers(context.Background(), []string{"1", "2", "3", "4", "5"}, want, func(_ context.Context, id string) (string, *x509.Certificate, error) {
			read = append(read, id)
			return id, mount[id], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := find(a, b); strings.Join(got, ",") != "2,4" || strings.Join(read, ",") != "1,2,3,4" {
		t.Errorf("found %v after reading %v; want 2,4, stopping once both are found", got, read)
	}
	gone := pkitest.New(t, now, pkitest.Spec{CN: "retired root"}, nil).Cert
	if got := find(b, gone); strings.Join(got, ",") != "2" {
		t.Errorf("with a CA no issuer holds: found %v, want 2", got)
	}
}
