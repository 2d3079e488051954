// Package pkitest builds certificate hierarchies (root → intermediate →
// leaf), keys and CSRs at test time, so tests ship no fixture files. It is
// for tests only.
//
// It must not import internal/pki: that package's own tests use it.
package pkitest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// Spec says how to build a certificate. Zero values give a CA with a fresh
// ECDSA P-256 key and a random serial, valid from an hour before now for 30
// days, with subject CN only.
//
// A fixed Ed25519 Key, a non-zero Serial and both NotBefore and NotAfter make
// the certificate the same, byte for byte, on every run (Ed25519 signatures
// are deterministic), for golden files that show fingerprints.
type Spec struct {
	// CN is the subject common name.
	CN string
	// Organization is the subject's O; none by default.
	Organization []string
	// NotCA makes a leaf (isCA=false).
	NotCA bool
	// NotBefore and NotAfter override the validity window.
	NotBefore, NotAfter time.Time
	// KeyUsage overrides the default: DigitalSignature, plus CertSign and
	// CRLSign for a CA.
	KeyUsage x509.KeyUsage
	// ExtKeyUsage sets extended key usages (none by default).
	ExtKeyUsage []x509.ExtKeyUsage
	// MaxPathLenZero limits a CA to signing leaves, as Istio intermediates
	// are.
	MaxPathLenZero bool
	// PermittedURIDomains adds a URI name constraint (a trust domain).
	PermittedURIDomains []string
	// Key is the certificate's key; nil generates an ECDSA P-256 key. Pass
	// an RSA key to test RSA paths, or a seeded Ed25519 key for
	// reproducible certificates.
	Key crypto.Signer
	// Serial is the serial number; zero picks a random 127-bit one.
	Serial int64
}

// Cert is a certificate and its key.
type Cert struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// New builds a certificate signed by parent, or self-signed if parent is nil.
func New(t testing.TB, now time.Time, s Spec, parent *Cert) *Cert {
	t.Helper()
	key := s.Key
	if key == nil {
		key = ECKey(t)
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = now.Add(-time.Hour)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = now.Add(30 * 24 * time.Hour)
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		var err error
		// Random rather than a counter: no package state, and tests in
		// parallel never share a serial.
		if serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
			t.Fatal(err)
		}
	}
	usage := s.KeyUsage
	if usage == 0 {
		usage = x509.KeyUsageDigitalSignature
		if !s.NotCA {
			usage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.CN, Organization: s.Organization},
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		BasicConstraintsValid: true,
		IsCA:                  !s.NotCA,
		MaxPathLenZero:        s.MaxPathLenZero,
		PermittedURIDomains:   s.PermittedURIDomains,
		ExtKeyUsage:           s.ExtKeyUsage,
		KeyUsage:              usage,
	}
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parent.Key, parent.Cert
	}
	return &Cert{Cert: Create(t, tmpl, issuer, key.Public(), signer), Key: key}
}

// Create signs tmpl for pub with parent's key and returns the parsed
// certificate: for the shapes Spec does not cover.
func Create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("creating test certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ECKey generates an ECDSA P-256 key.
func ECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// RSAKey generates a 2048-bit RSA key.
func RSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// SeededEd25519Key returns the same Ed25519 key for the same seed on every
// run.
func SeededEd25519Key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// PEM is the certificate as one PEM block.
func (c *Cert) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the key as PKCS#8 PEM.
func (c *Cert) KeyPEM(t testing.TB) []byte {
	t.Helper()
	return EncodeKey(t, c.Key, PKCS8)
}

// KeyFormat is a private key encoding, named by its PEM block type.
type KeyFormat string

// The private key encodings a cacerts Secret may hold.
const (
	PKCS8 KeyFormat = "PRIVATE KEY"     // any key type
	SEC1  KeyFormat = "EC PRIVATE KEY"  // ECDSA only; cert-manager's default for EC keys
	PKCS1 KeyFormat = "RSA PRIVATE KEY" // RSA only
)

// EncodeKey is key as one PEM block in format. It fails t if the format
// cannot hold that key type.
func EncodeKey(t testing.TB, key crypto.Signer, format KeyFormat) []byte {
	t.Helper()
	var der []byte
	var err error
	switch format {
	case PKCS8:
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case SEC1:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			t.Fatalf("%s needs an ECDSA key, got %T", format, key)
		}
		der, err = x509.MarshalECPrivateKey(k)
	case PKCS1:
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			t.Fatalf("%s needs an RSA key, got %T", format, key)
		}
		der = x509.MarshalPKCS1PrivateKey(k)
	default:
		t.Fatalf("unknown key format %q", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: string(format), Bytes: der})
}

// CSR makes a fresh ECDSA P-256 key and a PEM certificate request signed
// with it. tmpl carries the subject and SANs.
func CSR(t testing.TB, tmpl *x509.CertificateRequest) (crypto.Signer, []byte) {
	t.Helper()
	key := ECKey(t)
	return key, signCSR(t, tmpl, key)
}

// URICSR is a PEM certificate request signed with key, for subject CN cn
// (none if empty) and the URI SANs uris: the shape of the requests Istio
// and cert-manager send for SPIFFE identities. key may be any signer, so a
// test can pass one the code under test must refuse.
func URICSR(t testing.TB, key crypto.Signer, cn string, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return signCSR(t, tmpl, key)
}

func signCSR(t testing.TB, tmpl *x509.CertificateRequest, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("creating test certificate request: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// TLSData is what cert-manager writes for c issued under root: tls.crt,
// tls.key and ca.crt.
func TLSData(t testing.TB, c, root *Cert) map[string][]byte {
	return map[string][]byte{"tls.crt": c.PEM(), "tls.key": c.KeyPEM(t), "ca.crt": root.PEM()}
}

// RandomNow is a random instant between 2025 and 2035, logged so a failure
// can be replayed. Tests start their clock there so that a stray time.Now()
// in the code under test shows up as a failure.
func RandomNow(t testing.TB) time.Time {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(10*365*24*3600))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_750_000_000+n.Int64(), 0).UTC()
	t.Logf("fake clock starts at %s", now.Format(time.RFC3339))
	return now
}

// CRLSpec says how to build a CRL. Zero values give CRL number 1, valid
// from a minute before now for a day, revoking nothing.
type CRLSpec struct {
	// Number is the CRL number; zero means 1.
	Number int64
	// ThisUpdate and NextUpdate override the validity window.
	ThisUpdate, NextUpdate time.Time
	// Revoked are the certificates the CRL lists.
	Revoked []*x509.Certificate
	// ExtraExtensions are added as they are (a critical one, say).
	ExtraExtensions []pkix.Extension
}

// CRL is a CRL signed by c.
func (c *Cert) CRL(t testing.TB, now time.Time, s CRLSpec) *x509.RevocationList {
	t.Helper()
	if s.Number == 0 {
		s.Number = 1
	}
	if s.ThisUpdate.IsZero() {
		s.ThisUpdate = now.Add(-time.Minute)
	}
	if s.NextUpdate.IsZero() {
		s.NextUpdate = now.Add(24 * time.Hour)
	}
	var entries []x509.RevocationListEntry
	for _, r := range s.Revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.SerialNumber, RevocationTime: s.ThisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(s.Number), ThisUpdate: s.ThisUpdate, NextUpdate: s.NextUpdate,
		RevokedCertificateEntries: entries, ExtraExtensions: s.ExtraExtensions,
	}, c.Cert, c.Key)
	if err != nil {
		t.Fatalf("creating test CRL of %q: %v", c.Cert.Subject.CommonName, err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// CRLPEM is crls as X509 CRL blocks, one after another.
func CRLPEM(crls ...*x509.RevocationList) []byte {
	var out []byte
	for _, c := range crls {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.Raw})...)
	}
	return out
}
