package issuer

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
)

const (
	// maxCSRBytes caps the CSR we parse; real CSRs are a few kilobytes.
	maxCSRBytes = 64 << 10
	// minRSABits is the weakest RSA key we sign: NIST deprecated 1024.
	minRSABits = 2048
	// maxRSABits stops a CSR from making Vault burn CPU on a huge key.
	maxRSABits = 8192
)

// ParseCSR decodes a PEM CSR and checks its signature and key strength.
// The error says what is wrong, never echoing the key.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) > maxCSRBytes {
		return nil, fmt.Errorf("the CSR is %d bytes, over the %d-byte limit", len(b), maxCSRBytes)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("the CSR is not PEM-encoded")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("the CSR's PEM block is %q, not CERTIFICATE REQUEST", block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CSR does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the CSR's signature does not verify: %w", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits {
			return fmt.Errorf("the CSR's RSA key has %d bits; at least %d are required", bits, minRSABits)
		}
		if bits > maxRSABits {
			return fmt.Errorf("the CSR's RSA key has %d bits; at most %d are accepted", bits, maxRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("the CSR's ECDSA curve %s is not accepted; use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("the CSR's key type %T is not accepted; use RSA, ECDSA or Ed25519", pub)
	}
	return nil
}

// CheckCAURIs enforces the URI SAN rule for intermediates: none, or exactly
// spiffe://<trustDomain> with an empty path. The error names the offending
// value.
func CheckCAURIs(uris []*url.URL, trustDomain string) error {
	want := "spiffe://" + trustDomain
	if len(uris) > 1 {
		return fmt.Errorf("an intermediate CSR may carry at most one URI SAN (%s); it has %d: %s", want, len(uris), joinURIs(uris))
	}
	for _, u := range uris {
		if u.String() != want {
			return fmt.Errorf("URI SAN %q is not allowed: an intermediate for trust domain %q may only name %s", u.String(), trustDomain, want)
		}
	}
	return nil
}

// CheckLeafURIs keeps leaf SPIFFE IDs inside the issuer's trust domain, so
// that one cluster's credentials cannot mint another cluster's identities.
// Non-SPIFFE URIs are left to the Vault role's allowed_uri_sans.
func CheckLeafURIs(uris []*url.URL, trustDomain string) error {
	if trustDomain == "" {
		return nil
	}
	for _, u := range uris {
		if !strings.EqualFold(u.Scheme, "spiffe") {
			continue
		}
		if u.Host != trustDomain || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("URI SAN %q is not allowed: SPIFFE IDs must be in trust domain %q", u.String(), trustDomain)
		}
	}
	return nil
}

func joinURIs(uris []*url.URL) string {
	s := make([]string, len(uris))
	for i, u := range uris {
		s[i] = u.String()
	}
	return strings.Join(s, ", ")
}
