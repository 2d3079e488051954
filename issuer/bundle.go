package issuer

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// Bundle is a signed certificate split the way cert-manager stores it.
type Bundle struct {
	// ChainPEM is the issued certificate followed by its intermediates,
	// without any root. It becomes tls.crt.
	ChainPEM []byte
	// CAPEM is the root the chain verifies to, followed by every other
	// trust anchor of the signing issuer. It becomes ca.crt. It never holds
	// an intermediate.
	CAPEM []byte
	// Certificate is the issued certificate.
	Certificate *x509.Certificate
}

// PublicKeyMatches reports whether the certificate carries the CSR's key.
// Vault must sign what it was given; anything else is a broken or hostile
// response, and the in-cluster private key would not match it.
func PublicKeyMatches(cert *x509.Certificate, csr *x509.CertificateRequest) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(csr.PublicKey)
}

// CheckIssued refuses a certificate that does not carry what was asked of
// Vault. The CA-ness, path length and trust-domain name constraint of an
// intermediate are the whole of the cluster's confinement; a Vault that
// dropped them (one that predates permitted_uri_domains ignores it with
// only a warning, and a policy or role can change them) would hand the
// cluster an unconstrained CA under the shared root, so it is never stored.
func CheckIssued(cert *x509.Certificate, req vaultcontract.SignRequest) error {
	if !req.CA {
		if cert.IsCA {
			return errors.New("Vault returned a CA certificate for a leaf request")
		}
		return nil
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("Vault returned an intermediate that is not a CA")
	}
	if cert.MaxPathLen != req.MaxPathLength || (req.MaxPathLength == 0 && !cert.MaxPathLenZero) {
		return fmt.Errorf("Vault returned an intermediate with path length %s, not the %d asked for", pathLen(cert), req.MaxPathLength)
	}
	if !slices.Equal(cert.PermittedURIDomains, req.PermittedURIDomains) {
		return fmt.Errorf("Vault returned an intermediate whose permitted URI domains are %q, not %q: it may not support permitted_uri_domains (Vault >= 1.19 does)", cert.PermittedURIDomains, req.PermittedURIDomains)
	}
	if !cert.PermittedDNSDomainsCritical {
		return errors.New("Vault returned an intermediate whose name constraints are not critical")
	}
	return nil
}

func pathLen(cert *x509.Certificate) string {
	if cert.MaxPathLen < 0 || (cert.MaxPathLen == 0 && !cert.MaxPathLenZero) {
		return "unlimited"
	}
	return fmt.Sprint(cert.MaxPathLen)
}

// SplitResponse builds the bundle from Vault's answer and the signing
// issuer's trust anchors (vault.Client.TrustAnchors). The roots in the
// answer's ca_chain, which is the signing issuer's chain, and the anchors
// are both candidates: Vault omits the root from ca_chain when the issuing
// issuer's root lives elsewhere. The chain must verify to one of them at
// now.
func SplitResponse(resp *vault.SignResponse, anchors []*x509.Certificate, now time.Time) (Bundle, error) {
	leaf := resp.Certificate
	chain := []*x509.Certificate{leaf}
	var candidates []*x509.Certificate
	for _, c := range resp.CAChain {
		switch {
		case c.Equal(leaf):
		case pki.IsSelfSigned(c):
			candidates = append(candidates, c)
		case !pki.Contains(chain, c):
			chain = append(chain, c)
		}
	}
	candidates = pki.LiveRoots(append(candidates, anchors...), now)
	if len(candidates) == 0 {
		return Bundle{}, errors.New("vault knows no live self-signed root for the signing issuer; import the root certificate as an issuer of the mount, or run meshtrust vault bootstrap")
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	signing := -1
	for i, root := range candidates {
		pool := x509.NewCertPool()
		pool.AddCert(root)
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: intermediates,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}); err == nil {
			signing = i
			break
		}
	}
	if signing < 0 {
		return Bundle{}, fmt.Errorf("the issued certificate (issuer %q) does not chain to any of the %d live trust anchors Vault lists for the signing issuer", leaf.Issuer.String(), len(candidates))
	}
	roots := append([]*x509.Certificate{candidates[signing]}, candidates[:signing]...)
	roots = append(roots, candidates[signing+1:]...)
	return Bundle{ChainPEM: pki.EncodeCertificates(chain...), CAPEM: pki.EncodeCertificates(roots...), Certificate: leaf}, nil
}

// Truncation compares the lifetime Vault granted with the one requested.
// Vault silently caps a TTL at the role's max_ttl or the issuer's expiry; a
// shortfall over a minute is worth telling the user, but never worth
// re-issuing, which would only produce the same certificate again.
func Truncation(cert *x509.Certificate, requested time.Duration) (granted time.Duration, truncated bool) {
	granted = cert.NotAfter.Sub(cert.NotBefore)
	if requested <= 0 {
		return granted, false
	}
	return granted, requested-granted > time.Minute
}
