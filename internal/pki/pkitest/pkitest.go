// Package pkitest builds certificate hierarchies at test time, so tests ship
// no fixture files. It is for tests only.
package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync/atomic"
	"testing"
	"time"
)

// Spec says how to build a certificate. Zero values give an ECDSA P-256 CA
// valid from an hour before now for 30 days.
type Spec struct {
	// CN is the subject common name.
	CN string
	// NotCA makes a leaf (isCA=false).
	NotCA bool
	// NotBefore and NotAfter override the validity window.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage sets extended key usages (none by default).
	ExtKeyUsage []x509.ExtKeyUsage
}

// Cert is a certificate and its key.
type Cert struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

var serial atomic.Int64

// New builds a certificate signed by parent, or self-signed if parent is nil.
func New(t testing.TB, now time.Time, s Spec, parent *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = now.Add(-time.Hour)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = now.Add(30 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: s.CN, Organization: []string{"meshtrust test"}},
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		BasicConstraintsValid: true,
		IsCA:                  !s.NotCA,
		ExtKeyUsage:           s.ExtKeyUsage,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if !s.NotCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	var signer crypto.Signer = key
	issuer := tmpl
	if parent != nil {
		signer, issuer = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{Cert: c, Key: key}
}

// PEM is the certificate as one PEM block.
func (c *Cert) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the key as PKCS#8 PEM.
func (c *Cert) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TLSData is what cert-manager writes for c issued under root: tls.crt,
// tls.key and ca.crt.
func TLSData(t testing.TB, c, root *Cert) map[string][]byte {
	return map[string][]byte{"tls.crt": c.PEM(), "tls.key": c.KeyPEM(t), "ca.crt": root.PEM()}
}
