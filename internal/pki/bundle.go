package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Bundle is a signing CA as istiod consumes it: the CA certificate, its key,
// the intermediates above it and the trusted roots.
type Bundle struct {
	// Cert is the signing CA certificate (ca-cert.pem, first block of tls.crt).
	Cert *x509.Certificate
	// Intermediates are the certificates between Cert and its root, ordered
	// upwards. Self-signed roots are never in here.
	Intermediates []*x509.Certificate
	// Key is Cert's private key.
	Key *PrivateKey
	// Roots are every trusted root (root-cert.pem, ca.crt), in order.
	Roots []*x509.Certificate
	// RootsPEM, when set, is written verbatim as the root bundle instead of
	// re-encoding Roots. It carries old roots byte-for-byte during a root
	// transition (see MergeRoots) and must decode to Roots.
	RootsPEM []byte
}

// ParseTLS reads a kubernetes.io/tls-shaped map (tls.crt, tls.key, ca.crt),
// as cert-manager writes it. tls.crt may list its certificates in any order
// and may include the root; ca.crt must hold at least one root.
func ParseTLS(data map[string][]byte) (*Bundle, error) {
	return parse(data, TLSCertKey, TLSCertKey, TLSKeyKey, CACertBundleKey)
}

// ParseIstio reads Istio's layout (ca-cert.pem, ca-key.pem, cert-chain.pem,
// root-cert.pem). cert-chain.pem may be absent, as istiod allows.
func ParseIstio(data map[string][]byte) (*Bundle, error) {
	return parse(data, CACertKey, CertChainKey, CAKeyKey, RootCertKey)
}

// Parse reads data in the given layout.
func Parse(layout Layout, data map[string][]byte) (*Bundle, error) {
	if layout == LayoutTLS {
		return ParseTLS(data)
	}
	return ParseIstio(data)
}

func parse(data map[string][]byte, certKey, chainKey, keyKey, rootKey string) (*Bundle, error) {
	for _, k := range []string{certKey, keyKey, rootKey} {
		if len(bytes.TrimSpace(data[k])) == 0 {
			return nil, &Error{Check: CheckMissing, Field: k, Value: "empty or absent"}
		}
	}
	certs, err := DecodeCertificates(data[certKey], MaxChainPEMSize)
	if err != nil {
		return nil, withField(err, certKey)
	}
	// The signing certificate is the first block, as istiod reads it; the
	// rest of the chain may come in any order.
	signing := certs[0]
	if chainKey != certKey && len(bytes.TrimSpace(data[chainKey])) > 0 {
		chain, err := DecodeCertificates(data[chainKey], MaxChainPEMSize)
		if err != nil {
			return nil, withField(err, chainKey)
		}
		certs = append(certs, chain...)
	}
	ordered, err := OrderChain(certs)
	if err != nil {
		return nil, withField(err, chainKey)
	}
	b := &Bundle{Cert: signing}
	switch {
	case len(ordered.Certs) == 0:
		// A lone self-signed CA signs for itself.
		if ordered.Root != signing {
			return nil, &Error{Check: CheckChainOrder, Field: certKey, Value: "signing certificate is not the chain's bottom"}
		}
	case !bytes.Equal(ordered.Certs[0].Raw, signing.Raw):
		return nil, &Error{Check: CheckChainOrder, Field: chainKey, Value: fmt.Sprintf("chain starts at %q, not at the signing certificate %q", ordered.Certs[0].Subject.String(), signing.Subject.String())}
	default:
		b.Intermediates = ordered.Certs[1:]
	}
	if b.Key, err = ParsePrivateKey(data[keyKey]); err != nil {
		return nil, withField(err, keyKey)
	}
	if b.Roots, err = DecodeCertificates(data[rootKey], MaxRootBundlePEMSize); err != nil {
		return nil, withField(err, rootKey)
	}
	return b, nil
}

// Top returns the highest certificate of the chain below the roots.
func (b *Bundle) Top() *x509.Certificate {
	if n := len(b.Intermediates); n > 0 {
		return b.Intermediates[n-1]
	}
	return b.Cert
}

// ChainRoot returns the root in Roots that signed the top of the chain, or the
// signing certificate itself if it is self-signed. It is nil if no root fits.
func (b *Bundle) ChainRoot() *x509.Certificate {
	if IsSelfSigned(b.Cert) {
		return b.Cert
	}
	return IssuerIn(b.Top(), b.Roots)
}

// FullChain is the signing certificate, the intermediates and the chain's
// root: what cert-chain.pem holds.
func (b *Bundle) FullChain() ([]*x509.Certificate, error) {
	root := b.ChainRoot()
	if root == nil {
		return nil, &Error{Check: CheckChainVerify, Value: fmt.Sprintf("no root in the bundle signed %q", b.Top().Subject.String())}
	}
	chain := append([]*x509.Certificate{b.Cert}, b.Intermediates...)
	if root != b.Cert {
		chain = append(chain, root)
	}
	return chain, nil
}

// RootBundlePEM is the root bundle as written: RootsPEM if set, else Roots
// encoded block after block.
func (b *Bundle) RootBundlePEM() []byte {
	if b.RootsPEM != nil {
		return b.RootsPEM
	}
	return EncodeCertificates(b.Roots...)
}

// Data renders the bundle in the given layout. Every certificate file is
// re-encoded from parsed certificates.
func (b *Bundle) Data(layout Layout) (map[string][]byte, error) {
	if b.Cert == nil || b.Key == nil {
		return nil, &Error{Check: CheckMissing, Value: "bundle has no certificate or key"}
	}
	chain, err := b.FullChain()
	if err != nil {
		return nil, err
	}
	chainPEM := EncodeCertificates(chain...)
	key := bytes.Clone(b.Key.PEM)
	roots := bytes.Clone(b.RootBundlePEM())
	if layout == LayoutTLS {
		return map[string][]byte{
			TLSCertKey:      chainPEM,
			TLSKeyKey:       key,
			CACertBundleKey: roots,
		}, nil
	}
	return map[string][]byte{
		CACertKey:    EncodeCertificates(b.Cert),
		CAKeyKey:     key,
		CertChainKey: chainPEM,
		RootCertKey:  roots,
	}, nil
}

// MergeRoots builds a root bundle for a root transition: the previous bundle's
// bytes verbatim at the start (istiod up to 1.30 only accepts a new root file
// that contains the old one), then each root of current that previous lacks.
// previous must parse as certificates.
func MergeRoots(previous []byte, current []*x509.Certificate) ([]byte, []*x509.Certificate, error) {
	old, err := DecodeCertificates(previous, MaxRootBundlePEMSize)
	if err != nil {
		return nil, nil, withField(err, "previous roots")
	}
	out := bytes.Clone(previous)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		// Without this a PEM value lacking a final newline (Vault returns
		// those) would fuse with the next block's BEGIN line.
		out = append(out, '\n')
	}
	all := old
	for _, c := range current {
		if Contains(all, c) {
			continue
		}
		out = append(out, EncodeCertificates(c)...)
		all = append(all, c)
	}
	if len(out) > MaxRootBundlePEMSize {
		return nil, nil, &Error{Check: CheckSize, Field: "merged roots", Value: fmt.Sprintf("%d bytes", len(out)), Err: ErrTooLarge{Size: len(out), Max: MaxRootBundlePEMSize}}
	}
	return out, all, nil
}

// Verify checks a bundle the way istiod checks a plugged CA before using it,
// plus the lifetime guard:
//   - the key matches the certificate;
//   - the certificate is a CA and inside its validity window at now;
//   - crypto/x509 verifies it with Intermediates and the chain's root as
//     intermediates and Roots as anchors, at now, with the default key usages
//     (serverAuth) so a chain carrying e.g. only clientAuth is rejected;
//   - it does not expire within minRemaining of now.
//
// The first failing check is returned as an *Error.
func Verify(b *Bundle, now time.Time, minRemaining time.Duration) error {
	if b == nil || b.Cert == nil {
		return &Error{Check: CheckMissing, Value: "no signing certificate"}
	}
	if b.Key == nil || b.Key.Signer == nil {
		return &Error{Check: CheckMissing, Value: "no private key"}
	}
	if len(b.Roots) == 0 {
		return &Error{Check: CheckRoots, Value: "no root certificates"}
	}
	c := b.Cert
	subj := c.Subject.String()
	if err := KeyMatchesCertificate(b.Key.Signer, c); err != nil {
		return err
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return &Error{Check: CheckIsCA, Value: fmt.Sprintf("%q has isCA=false", subj)}
	}
	if now.Before(c.NotBefore) {
		return &Error{Check: CheckNotYetValid, Value: fmt.Sprintf("%q notBefore=%s, now=%s", subj, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if now.After(c.NotAfter) {
		return &Error{Check: CheckExpired, Value: fmt.Sprintf("%q notAfter=%s, now=%s", subj, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}

	inter := x509.NewCertPool()
	for _, ic := range b.Intermediates {
		inter.AddCert(ic)
	}
	roots := x509.NewCertPool()
	for _, r := range b.Roots {
		roots.AddCert(r)
	}
	// KeyUsages left nil means ExtKeyUsageServerAuth, exactly as istiod calls it.
	if _, err := c.Verify(x509.VerifyOptions{Intermediates: inter, Roots: roots, CurrentTime: now}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
			return &Error{Check: CheckKeyUsage, Value: fmt.Sprintf("%q: extended key usage lacks serverAuth", inv.Cert.Subject.String()), Err: err}
		}
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return &Error{Check: CheckChainVerify, Value: fmt.Sprintf("%q does not chain to any of the roots %v", b.Top().Subject.String(), Fingerprints(b.Roots)), Err: err}
		}
		return &Error{Check: CheckChainVerify, Value: fmt.Sprintf("%q", subj), Err: err}
	}
	if left := c.NotAfter.Sub(now); left < minRemaining {
		return &Error{Check: CheckLifetime, Value: fmt.Sprintf("%q expires in %s at %s, less than the required %s", subj, left.Round(time.Second), c.NotAfter.UTC().Format(time.RFC3339), minRemaining)}
	}
	return nil
}
