package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// tcert is a certificate built at test time with its key.
type tcert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// certSpec says how to build a test certificate; zero values give a CA valid
// from an hour before now for 30 days.
type certSpec struct {
	cn        string
	notCA     bool
	notBefore time.Time
	notAfter  time.Time
	extUsage  []x509.ExtKeyUsage
	rsa       bool
}

var serial int64

func mkcert(t testing.TB, now time.Time, s certSpec, parent *tcert) *tcert {
	t.Helper()
	var key crypto.Signer
	var err error
	if s.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.notBefore.IsZero() {
		s.notBefore = now.Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = now.Add(30 * 24 * time.Hour)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: s.cn},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  !s.notCA,
		ExtKeyUsage:           s.extUsage,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if !s.notCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tcert{cert: c, key: key}
}

func (c *tcert) pem() []byte { return EncodeCertificates(c.cert) }

func (c *tcert) keyPEM(t testing.TB, format string) []byte {
	t.Helper()
	var der []byte
	var err error
	typ := format
	switch format {
	case blockPKCS8PrivateKey:
		der, err = x509.MarshalPKCS8PrivateKey(c.key)
	case blockRSAPrivateKey:
		der = x509.MarshalPKCS1PrivateKey(c.key.(*rsa.PrivateKey))
	case blockECPrivateKey:
		der, err = x509.MarshalECPrivateKey(c.key.(*ecdsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// pkiSet is root -> intermediate -> (optional second intermediate).
type pkiSet struct {
	root, inter *tcert
}

func newSet(t testing.TB, now time.Time) pkiSet {
	root := mkcert(t, now, certSpec{cn: "root", notAfter: now.Add(365 * 24 * time.Hour)}, nil)
	inter := mkcert(t, now, certSpec{cn: "intermediate"}, root)
	return pkiSet{root: root, inter: inter}
}

// tlsData is what cert-manager writes for the intermediate.
func (s pkiSet) tlsData(t testing.TB) map[string][]byte {
	return map[string][]byte{
		TLSCertKey:      s.inter.pem(),
		TLSKeyKey:       s.inter.keyPEM(t, blockPKCS8PrivateKey),
		CACertBundleKey: s.root.pem(),
	}
}

// randomNow seeds tests at a random instant so that a stray time.Now() in
// the code under test shows up as a failure.
func randomNow() time.Time {
	n, _ := rand.Int(rand.Reader, big.NewInt(20*365*24*3600))
	return time.Unix(1_700_000_000+n.Int64(), 0).UTC()
}
