package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// Size caps. They follow cert-manager's internal/pem estimates: a 16k-bit RSA
// certificate with many names is about 36 kB, a 16k-bit RSA key about 13 kB.
// Anything bigger is hostile or broken, and parsing it would only burn memory.
const (
	// MaxCertificatePEMSize caps one PEM-encoded certificate.
	MaxCertificatePEMSize = 36500
	// MaxChainPEMSize caps a PEM-encoded chain (ten large certificates).
	MaxChainPEMSize = 9*6500 + MaxCertificatePEMSize
	// MaxRootBundlePEMSize caps a root bundle (150 large roots).
	MaxRootBundlePEMSize = 150 * 2200
	// MaxPrivateKeyPEMSize caps one PEM-encoded private key.
	MaxPrivateKeyPEMSize = 13000
	// MaxCertificatesInChain caps how many unique certificates a chain may
	// hold; ordering is quadratic in it.
	MaxCertificatesInChain = 100
	// MaxSecretSize is the Kubernetes limit on a Secret's data; a source
	// Secret over it is refused outright.
	MaxSecretSize = 1 << 20
)

const blockCertificate = "CERTIFICATE"

// DecodeCertificates decodes every block of data, which must all be
// CERTIFICATE blocks, with nothing but whitespace between or around them. It
// refuses data longer than maxSize before looking at it. Like istiod's loader
// it treats any stray non-PEM content as an error rather than skipping it.
func DecodeCertificates(data []byte, maxSize int) ([]*x509.Certificate, error) {
	if len(data) > maxSize {
		return nil, &Error{Check: CheckSize, Value: fmt.Sprintf("%d bytes", len(data)), Err: ErrTooLarge{Size: len(data), Max: maxSize}}
	}
	var certs []*x509.Certificate
	rest := data
	for i := 0; ; i++ {
		rest = bytes.TrimSpace(rest)
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, &Error{Check: CheckPEM, Value: fmt.Sprintf("block %d", i), Err: fmt.Errorf("unexpected non-PEM data")}
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, &Error{Check: CheckPEM, Value: fmt.Sprintf("block %d", i), Err: fmt.Errorf("malformed PEM block")}
		}
		if block.Type != blockCertificate {
			return nil, &Error{Check: CheckPEM, Value: fmt.Sprintf("block %d has type %q", i, block.Type), Err: fmt.Errorf("want %s", blockCertificate)}
		}
		if len(certs) >= MaxCertificatesInChain {
			return nil, &Error{Check: CheckSize, Value: fmt.Sprintf("more than %d certificates", MaxCertificatesInChain)}
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &Error{Check: CheckCertificate, Value: fmt.Sprintf("block %d", i), Err: err}
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, &Error{Check: CheckPEM, Value: "empty", Err: ErrNoPEMData}
	}
	return certs, nil
}

// EncodeCertificates PEM-encodes certs one block after another. Each block
// ends in a newline, so the result can be concatenated or parsed by Istio's
// strict loader; it never joins caller-supplied strings.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		// pem.Encode into a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: blockCertificate, Bytes: c.Raw})
	}
	return buf.Bytes()
}
