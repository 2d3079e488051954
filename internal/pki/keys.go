package pki

// Key names of Istio's plugged-CA Secret ("cacerts"), Istio layout. They match
// security/pkg/pki/ca/ca.go in Istio.
const (
	// CACertKey holds the signing (intermediate) CA certificate.
	CACertKey = "ca-cert.pem"
	// CAKeyKey holds the signing CA's private key.
	CAKeyKey = "ca-key.pem"
	// CertChainKey holds the signing certificate, further intermediates and the root.
	CertChainKey = "cert-chain.pem"
	// RootCertKey holds every trusted root.
	RootCertKey = "root-cert.pem"
	// CRLKey holds the CRLs istiod publishes to every namespace
	// (istio-ca-crl) and proxies check peers against; only the Istio
	// layout carries it.
	CRLKey = "ca-crl.pem"
)

// Key names of the kubernetes.io/tls layout, which is both what cert-manager
// writes and the alternative layout istiod accepts for cacerts.
const (
	// TLSCertKey holds the signing certificate followed by its chain.
	TLSCertKey = "tls.crt"
	// TLSKeyKey holds the signing certificate's private key.
	TLSKeyKey = "tls.key"
	// CACertBundleKey holds the trusted roots.
	CACertBundleKey = "ca.crt"
)

// Layout selects which set of keys a cacerts Secret uses.
type Layout string

const (
	// LayoutIstio writes ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem.
	LayoutIstio Layout = "istio"
	// LayoutTLS writes tls.crt, tls.key and ca.crt.
	LayoutTLS Layout = "tls"
)

// ParseLayout maps an annotation value to a Layout; empty means LayoutIstio.
func ParseLayout(s string) (Layout, error) {
	switch Layout(s) {
	case "", LayoutIstio:
		return LayoutIstio, nil
	case LayoutTLS:
		return LayoutTLS, nil
	}
	return "", &Error{Check: CheckLayout, Value: s, Err: errUnknownLayout}
}

// Keys returns the Secret keys the layout writes, in a fixed order.
func (l Layout) Keys() []string {
	if l == LayoutTLS {
		return []string{TLSCertKey, TLSKeyKey, CACertBundleKey}
	}
	return []string{CACertKey, CAKeyKey, CertChainKey, RootCertKey}
}

// DetectLayout tells which layout a Secret's data uses: Istio's if it has
// ca-cert.pem, TLS if it has tls.crt, else "".
func DetectLayout(data map[string][]byte) Layout {
	switch {
	case data[CACertKey] != nil:
		return LayoutIstio
	case data[TLSCertKey] != nil:
		return LayoutTLS
	}
	return ""
}
