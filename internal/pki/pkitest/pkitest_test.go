package pkitest

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// Golden files elsewhere show fingerprints, so a fixed Spec must give the
// same bytes every time.
func TestNewIsReproducibleWithFixedKeySerialAndTimes(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func() *Cert {
		root := New(t, now, Spec{CN: "root", Key: SeededEd25519Key(1), Serial: 1, NotBefore: now, NotAfter: now.Add(time.Hour)}, nil)
		return New(t, now, Spec{CN: "inter", Key: SeededEd25519Key(2), Serial: 2, NotBefore: now, NotAfter: now.Add(time.Hour),
			MaxPathLenZero: true, PermittedURIDomains: []string{"east.mesh"}}, root)
	}
	a, b := mk(), mk()
	if !bytes.Equal(a.Cert.Raw, b.Cert.Raw) {
		t.Error("same spec, different certificates")
	}
	if !a.Cert.MaxPathLenZero || len(a.Cert.PermittedURIDomains) != 1 || a.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("intermediate lacks its constraints or CA key usage: %+v", a.Cert)
	}
}

func TestEncodeKeyFormatsParse(t *testing.T) {
	now := RandomNow(t)
	ec := New(t, now, Spec{CN: "ec"}, nil)
	rs := New(t, now, Spec{CN: "rsa", Key: RSAKey(t)}, nil)
	for _, tc := range []struct {
		c      *Cert
		format KeyFormat
		parse  func([]byte) (any, error)
	}{
		{ec, PKCS8, x509.ParsePKCS8PrivateKey},
		{rs, PKCS8, x509.ParsePKCS8PrivateKey},
		{ec, SEC1, func(b []byte) (any, error) { return x509.ParseECPrivateKey(b) }},
		{rs, PKCS1, func(b []byte) (any, error) { return x509.ParsePKCS1PrivateKey(b) }},
	} {
		block, rest := pem.Decode(EncodeKey(t, tc.c.Key, tc.format))
		if block == nil || len(rest) != 0 || block.Type != string(tc.format) {
			t.Fatalf("%s %s: not one PEM block of that type", tc.c.Cert.Subject.CommonName, tc.format)
		}
		if _, err := tc.parse(block.Bytes); err != nil {
			t.Errorf("%s %s: %v", tc.c.Cert.Subject.CommonName, tc.format, err)
		}
	}
}

func TestCSRSignedByItsKey(t *testing.T) {
	key, p := CSR(t, &x509.CertificateRequest{})
	req := parseSignedCSR(t, p)
	if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(req.PublicKey) {
		t.Error("CSR is not for the returned key")
	}
}

func TestURICSRCarriesSubjectAndURIs(t *testing.T) {
	key := ECKey(t)
	req := parseSignedCSR(t, URICSR(t, key, "east.mesh", "spiffe://east.mesh", "spiffe://east.mesh/ns/a/sa/b"))
	if !key.PublicKey.Equal(req.PublicKey) {
		t.Error("CSR is not for the given key")
	}
	if req.Subject.CommonName != "east.mesh" || len(req.URIs) != 2 || req.URIs[1].String() != "spiffe://east.mesh/ns/a/sa/b" {
		t.Errorf("CSR has CN %q and URIs %v", req.Subject.CommonName, req.URIs)
	}
}

// parseSignedCSR parses one PEM certificate request and checks its
// self-signature.
func parseSignedCSR(t *testing.T, p []byte) *x509.CertificateRequest {
	t.Helper()
	block, _ := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatal("not a PEM CSR")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return req
}
