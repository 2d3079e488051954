package pki

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// FuzzParseTLS feeds arbitrary Secret contents to the parser and validator.
// Neither may panic, and any bundle that verifies must survive a render and
// re-parse in both layouts and still verify.
func FuzzParseTLS(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s := newSet(f, now)
	d := pkitest.TLSData(f, s.inter, s.root)
	f.Add(d[TLSCertKey], d[TLSKeyKey], d[CACertBundleKey])
	f.Add(append(d[TLSCertKey], d[CACertBundleKey]...), d[TLSKeyKey], d[CACertBundleKey])
	f.Add(bytes.TrimRight(d[TLSCertKey], "\n"), d[TLSKeyKey], []byte("-----BEGIN CERTIFICATE-----\n"))
	f.Add([]byte("garbage"), []byte{}, []byte{0})
	f.Fuzz(func(t *testing.T, crt, key, ca []byte) {
		b, err := ParseTLS(map[string][]byte{TLSCertKey: crt, TLSKeyKey: key, CACertBundleKey: ca})
		if err != nil {
			if CheckOf(err) == "" {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := Verify(b, now, time.Hour); err != nil {
			if CheckOf(err) == "" {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		roundTrip(t, b, now, time.Hour)
	})
}

// FuzzDecodeCertificates checks that decoding never panics and that what it
// accepts re-encodes to something it accepts again, certificate for
// certificate.
func FuzzDecodeCertificates(f *testing.F) {
	s := newSet(f, time.Unix(1_800_000_000, 0))
	f.Add(append(s.inter.PEM(), s.root.PEM()...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"))
	f.Fuzz(func(t *testing.T, in []byte) {
		certs, err := DecodeCertificates(in, MaxChainPEMSize)
		if err != nil {
			return
		}
		again, err := DecodeCertificates(EncodeCertificates(certs...), MaxChainPEMSize*2)
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-encoded certificates do not decode: %v", err)
		}
		_, _ = OrderChain(certs)
	})
}

// FuzzMergeRoots checks that a merged bundle always starts with the previous
// bytes and always parses.
func FuzzMergeRoots(f *testing.F) {
	s := newSet(f, time.Unix(1_800_000_000, 0))
	f.Add(bytes.TrimRight(s.root.PEM(), "\n"))
	f.Add(s.inter.PEM())
	f.Fuzz(func(t *testing.T, prev []byte) {
		out, _, err := MergeRoots(prev, []*x509.Certificate{s.root.Cert})
		if err != nil {
			return
		}
		if !bytes.HasPrefix(out, prev) {
			t.Fatal("previous bytes not kept verbatim at the start")
		}
		if _, err := DecodeCertificates(out, MaxRootBundlePEMSize); err != nil {
			t.Fatalf("merged bundle does not parse: %v", err)
		}
	})
}

// FuzzDecodeCRLEntry checks that decoding CRLs and certificates never panics,
// that every error names a check, and that what it accepts re-encodes to
// the same CRLs.
func FuzzDecodeCRLEntry(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s := newSet(f, now)
	crl := s.root.CRL(f, now, pkitest.CRLSpec{Revoked: []*x509.Certificate{s.inter.Cert}})
	f.Add(pkitest.CRLPEM(crl))
	f.Add(append(s.inter.PEM(), pkitest.CRLPEM(crl)...))
	f.Add([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, crls, err := DecodeCRLEntry(in, MaxCRLPEMSize)
		if err != nil {
			if CheckOf(err) == "" {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		again, err := DecodeCRLs(EncodeCRLs(crls...), MaxCRLBundlePEMSize)
		if err != nil || !SameCRLs(crls, again) {
			t.Fatalf("re-encoded CRLs do not decode to the same: %v", err)
		}
		for _, c := range crls {
			_ = CheckCRL(c, s.root.Cert, now, "fuzz")
		}
	})
}
