// Package workload does Envoy's part of mutual TLS between workloads, with
// the certificates istiod issues (e2e/istio's agent): TLS 1.3 handshakes
// with client certificates required, each side verifying the other against
// its own trust bundle and checking the peer's SPIFFE ID ("secure
// naming").
//
// It also loads a cluster's cacerts and signs with its intermediate key
// in-process. The stories use that only where istiod cannot be the signer:
// to forge a certificate for another cluster's trust domain, which the
// name constraint must stop.
//
// It lives under e2e/ on purpose: it is test equipment, never part of the
// product binaries.
package workload

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// CA is one cluster's plugged-in CA, as istiod loads it from cacerts.
type CA struct {
	// Cert is the intermediate (ca-cert.pem) and Key its key (ca-key.pem).
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain is cert-chain.pem: the intermediate, any further intermediates,
	// then the root. istiod appends it to every workload certificate.
	Chain []*x509.Certificate
	// Roots is root-cert.pem: the trust bundle every workload verifies
	// peers against.
	Roots *x509.CertPool
}

// LoadCA reads a cacerts Secret's data in Istio's layout.
func LoadCA(data map[string][]byte) (*CA, error) {
	b, err := pki.ParseIstio(data)
	if err != nil {
		return nil, fmt.Errorf("loading cacerts: %w", err)
	}
	chain, err := b.FullChain()
	if err != nil {
		return nil, fmt.Errorf("loading cacerts: %w", err)
	}
	roots := x509.NewCertPool()
	for _, r := range b.Roots {
		roots.AddCert(r)
	}
	return &CA{Cert: b.Cert, Key: b.Key.Signer, Chain: chain, Roots: roots}, nil
}

// Issue signs a certificate for id with ca's key, valid from now for ttl,
// shaped as istiod shapes a workload certificate: URI SAN only, server and
// client auth, chain appended. Nothing in the lab trusts it for being
// signed here: it exists to show what the name constraint refuses.
func Issue(ca *CA, id string, now time.Time, ttl time.Duration) (tls.Certificate, error) {
	uri, err := url.Parse(id)
	if err != nil || uri.Scheme != "spiffe" {
		return tls.Certificate{}, fmt.Errorf("workload identity %q is not a SPIFFE ID", id)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a workload key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing workload certificate %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing workload certificate: %w", err)
	}
	chain := [][]byte{der}
	for _, c := range ca.Chain {
		chain = append(chain, c.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// Verify checks a peer's certificate chain against roots, against crls as
// Envoy does when it has any (CheckRevocation), and that the leaf's only
// URI SAN is want. crypto/x509 enforces the intermediates' name
// constraints, so an intermediate constrained to one trust domain cannot
// vouch for another.
func Verify(rawCerts [][]byte, roots *x509.CertPool, crls []*x509.RevocationList, want string, now time.Time) (string, error) {
	if len(rawCerts) == 0 {
		return "", errors.New("peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return "", fmt.Errorf("parsing peer certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return "", fmt.Errorf("peer chain does not verify: %w", err)
	}
	if len(crls) > 0 {
		if err := CheckRevocation(chains[0], crls, now); err != nil {
			return "", fmt.Errorf("peer chain refused: %w", err)
		}
	}
	if len(certs[0].URIs) != 1 {
		return "", fmt.Errorf("peer certificate has %d URI SANs, want exactly 1", len(certs[0].URIs))
	}
	got := certs[0].URIs[0].String()
	if got != want {
		return got, fmt.Errorf("secure naming: peer is %s, want %s", got, want)
	}
	return got, nil
}
