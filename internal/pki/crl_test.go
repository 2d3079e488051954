package pki

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

func TestDecodeCRLs(t *testing.T) {
	now := pkitest.RandomNow(t)
	s := newSet(t, now)
	a := s.root.CRL(t, now, pkitest.CRLSpec{})
	b := s.inter.CRL(t, now, pkitest.CRLSpec{Revoked: []*x509.Certificate{s.inter.Cert}})
	two := pkitest.CRLPEM(a, b)
	tests := []struct {
		name      string
		in        []byte
		max       int
		wantN     int
		wantCheck Check
	}{
		{"two", two, MaxCRLPEMSize, 2, ""},
		{"empty holds none", nil, MaxCRLPEMSize, 0, ""},
		{"whitespace around", append(append([]byte("\n "), two...), "\n\n"...), MaxCRLPEMSize, 2, ""},
		{"garbage", []byte("garbage"), MaxCRLPEMSize, 0, CheckCRLPEM},
		{"garbage after", append(bytes.Clone(two), "junk"...), MaxCRLPEMSize, 0, CheckCRLPEM},
		{"a certificate", append(bytes.Clone(two), s.root.PEM()...), MaxCRLPEMSize, 0, CheckCRLPEM},
		{"a key", s.inter.KeyPEM(t), MaxCRLPEMSize, 0, CheckCRLPEM},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1, 2, 3}}), MaxCRLPEMSize, 0, CheckCRLParse},
		{"too large", two, len(two) - 1, 0, CheckCRLSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeCRLs(tt.in, tt.max)
			if CheckOf(err) != tt.wantCheck {
				t.Fatalf("check = %q (err %v), want %q", CheckOf(err), err, tt.wantCheck)
			}
			if len(got) != tt.wantN {
				t.Fatalf("got %d CRLs, want %d", len(got), tt.wantN)
			}
			if tt.wantCheck == "" && len(got) > 0 && !bytes.Equal(EncodeCRLs(got...), pkitest.CRLPEM(got...)) {
				t.Error("EncodeCRLs does not give the canonical PEM")
			}
		})
	}

	t.Run("entries mix certificates and CRLs", func(t *testing.T) {
		certs, crls, err := DecodeCRLEntry(append(s.inter.PEM(), two...), MaxCRLPEMSize)
		if err != nil || len(certs) != 1 || len(crls) != 2 {
			t.Fatalf("got %d certificates and %d CRLs (%v), want 1 and 2", len(certs), len(crls), err)
		}
	})
	t.Run("too many CRLs", func(t *testing.T) {
		var many []byte
		for range MaxCRLsInBundle + 1 {
			many = append(many, pkitest.CRLPEM(a)...)
		}
		if _, err := DecodeCRLs(many, len(many)); CheckOf(err) != CheckCRLSize {
			t.Fatalf("%d CRLs: %v, want %s", MaxCRLsInBundle+1, err, CheckCRLSize)
		}
	})
}

func TestCheckCRL(t *testing.T) {
	now := pkitest.RandomNow(t)
	s := newSet(t, now)
	other := pkitest.New(t, now, pkitest.Spec{CN: "root"}, nil) // same name, other key
	noCRLSign := pkitest.New(t, now, pkitest.Spec{CN: "no crl sign", KeyUsage: x509.KeyUsageCertSign}, nil)
	critical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}
	tests := []struct {
		name      string
		crl       *x509.RevocationList
		ca        *x509.Certificate
		wantCheck Check
	}{
		{"valid", s.root.CRL(t, now, pkitest.CRLSpec{}), s.root.Cert, ""},
		{"valid, the intermediate's", s.inter.CRL(t, now, pkitest.CRLSpec{}), s.inter.Cert, ""},
		{"no issuer known", s.root.CRL(t, now, pkitest.CRLSpec{}), nil, CheckCRLIssuer},
		{"signed by another CA", s.inter.CRL(t, now, pkitest.CRLSpec{}), s.root.Cert, CheckCRLIssuer},
		{"same name, another key", other.CRL(t, now, pkitest.CRLSpec{}), s.root.Cert, CheckCRLIssuer},
		{"expired", s.root.CRL(t, now, pkitest.CRLSpec{ThisUpdate: now.Add(-48 * time.Hour), NextUpdate: now.Add(-time.Second)}), s.root.Cert, CheckCRLExpired},
		{"expires now", s.root.CRL(t, now, pkitest.CRLSpec{ThisUpdate: now.Add(-time.Hour), NextUpdate: now}), s.root.Cert, CheckCRLExpired},
		{"thisUpdate within the skew", s.root.CRL(t, now, pkitest.CRLSpec{ThisUpdate: now.Add(CRLClockSkew - time.Second), NextUpdate: now.Add(time.Hour)}), s.root.Cert, ""},
		{"thisUpdate beyond the skew", s.root.CRL(t, now, pkitest.CRLSpec{ThisUpdate: now.Add(CRLClockSkew + time.Minute), NextUpdate: now.Add(time.Hour)}), s.root.Cert, CheckCRLTime},
		{"critical extension", s.root.CRL(t, now, pkitest.CRLSpec{ExtraExtensions: []pkix.Extension{critical}}), s.root.Cert, CheckCRLExtension},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCRL(tt.crl, tt.ca, now, "ca-crl.pem")
			if CheckOf(err) != tt.wantCheck {
				t.Fatalf("check = %q (err %v), want %q", CheckOf(err), err, tt.wantCheck)
			}
			if err != nil && !strings.Contains(err.Error(), "ca-crl.pem") {
				t.Errorf("error %q does not name the field", err)
			}
		})
	}
	t.Run("a CA without cRLSign cannot issue one", func(t *testing.T) {
		if _, err := NewEmptyCRL(noCRLSign.Cert, noCRLSign.Key, now); CheckOf(err) != CheckCRLIssuer {
			t.Fatalf("got %v, want %s", err, CheckCRLIssuer)
		}
	})
}

func TestMissingCRLsAndRevokes(t *testing.T) {
	now := pkitest.RandomNow(t)
	s := newSet(t, now)
	peer := pkitest.New(t, now, pkitest.Spec{CN: "peer intermediate"}, s.root)
	rootCRL := s.root.CRL(t, now, pkitest.CRLSpec{Revoked: []*x509.Certificate{peer.Cert}})
	interCRL := s.inter.CRL(t, now, pkitest.CRLSpec{})
	tests := []struct {
		name string
		cas  []*x509.Certificate
		crls []*x509.RevocationList
		want []string
	}{
		{"all covered", []*x509.Certificate{s.inter.Cert, s.root.Cert}, []*x509.RevocationList{interCRL, rootCRL}, nil},
		{"the root's alone: the intermediate's is missing (istio/istio#61075)", []*x509.Certificate{s.inter.Cert, s.root.Cert}, []*x509.RevocationList{rootCRL}, []string{"intermediate"}},
		{"none", []*x509.Certificate{s.inter.Cert, s.root.Cert}, nil, []string{"intermediate", "root"}},
		{"a peer's intermediate is no CA of ours", []*x509.Certificate{peer.Cert}, []*x509.RevocationList{interCRL, rootCRL}, []string{"peer intermediate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range MissingCRLs(tt.cas, tt.crls) {
				got = append(got, c.Subject.CommonName)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("missing %v, want %v", got, tt.want)
			}
		})
	}
	if !Revokes([]*x509.RevocationList{interCRL, rootCRL}, s.root.Cert, peer.Cert) {
		t.Error("the root's CRL revokes the peer's intermediate, but Revokes says no")
	}
	if Revokes([]*x509.RevocationList{interCRL, rootCRL}, s.root.Cert, s.inter.Cert) {
		t.Error("Revokes says the root's CRL lists our own intermediate")
	}
	if Revokes([]*x509.RevocationList{rootCRL}, s.inter.Cert, peer.Cert) {
		t.Error("Revokes took the root's CRL for the intermediate's")
	}
	if got := RevokedSerials([]*x509.RevocationList{rootCRL, rootCRL, interCRL}); len(got) != 1 || got[0] != peer.Cert.SerialNumber.Text(16) {
		t.Errorf("RevokedSerials = %v, want the peer's serial once", got)
	}
}

func TestNewerAndSort(t *testing.T) {
	now := pkitest.RandomNow(t)
	s := newSet(t, now)
	n1 := s.root.CRL(t, now, pkitest.CRLSpec{Number: 1})
	n2 := s.root.CRL(t, now, pkitest.CRLSpec{Number: 2, ThisUpdate: now.Add(-2 * time.Hour)})
	later := s.root.CRL(t, now, pkitest.CRLSpec{Number: 1, ThisUpdate: now})
	if !Newer(n2, n1) || Newer(n1, n2) {
		t.Error("a higher CRL number must win")
	}
	if !Newer(later, n1) {
		t.Error("on equal numbers a later thisUpdate must win")
	}
	inter := s.inter.CRL(t, now, pkitest.CRLSpec{})
	a := SortCRLs([]*x509.RevocationList{n2, inter, n1, n2})
	b := SortCRLs([]*x509.RevocationList{n1, n2, inter})
	if len(a) != 3 || !bytes.Equal(EncodeCRLs(a...), EncodeCRLs(b...)) {
		t.Fatalf("sorting is not canonical: %d vs %d CRLs", len(a), len(b))
	}
	if !SameCRLs([]*x509.RevocationList{n1, inter}, []*x509.RevocationList{inter, n1}) || SameCRLs([]*x509.RevocationList{n1}, []*x509.RevocationList{n2}) {
		t.Error("SameCRLs must ignore order and nothing else")
	}
}

func TestNewEmptyCRL(t *testing.T) {
	now := pkitest.RandomNow(t)
	s := newSet(t, now)
	crl, err := NewEmptyCRL(s.inter.Cert, s.inter.Key, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCRL(crl, s.inter.Cert, now, "own"); err != nil {
		t.Fatalf("the CRL it signs does not check: %v", err)
	}
	if !crl.NextUpdate.Equal(s.inter.Cert.NotAfter) || len(crl.RevokedCertificateEntries) != 0 || crl.Number.Cmp(big.NewInt(now.Unix())) != 0 {
		t.Errorf("nextUpdate %s (want %s), %d entries, number %v", crl.NextUpdate, s.inter.Cert.NotAfter, len(crl.RevokedCertificateEntries), crl.Number)
	}
	// A CRL from a clock CRLClockSkew behind is already valid.
	if err := CheckCRL(crl, s.inter.Cert, now.Add(-CRLClockSkew), "own"); err != nil {
		t.Errorf("a cluster whose clock is behind by the skew refuses it: %v", err)
	}
	if _, err := NewEmptyCRL(s.inter.Cert, s.root.Key, now); CheckOf(err) != CheckKeyMatch {
		t.Errorf("signing with another key: %v, want %s", err, CheckKeyMatch)
	}
	if _, err := NewEmptyCRL(s.inter.Cert, s.inter.Key, s.inter.Cert.NotAfter); CheckOf(err) != CheckExpired {
		t.Errorf("signing for an expired CA: %v, want %s", err, CheckExpired)
	}
}
