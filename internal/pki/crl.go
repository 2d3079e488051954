package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// CRL handling: what ca-crl.pem may hold, and the rule istiod and Envoy apply
// to it.
//
// istiod (security/pkg/pki/util/keycertbundle.go Verify) takes a ca-crl.pem
// only if, for every certificate of cert-chain.pem, some CRL in the file
// verifies with that certificate's key; otherwise it keeps its current CA and
// refuses every later cacerts update too (istio/istio#61075). Envoy checks
// every CA of a peer's chain, the root included, against the CRLs it has, and
// refuses the peer when any of them has no CRL, when that CRL's nextUpdate has
// passed, or when it lists the certificate. Hence: one valid CRL per CA that
// signs anything the cluster must accept, never an expired one.

// Size caps for CRLs. A CRL entry is about 40 bytes of DER, so 256 KiB of PEM
// holds several thousand revocations; meshtrust's mount signs only
// intermediates, a few per cluster and month.
const (
	// MaxCRLPEMSize caps one source of CRLs: Vault's CRLs of a mount, one
	// cluster's published entry, or the ca-crl.pem being read back.
	MaxCRLPEMSize = 256 << 10
	// MaxCRLBundlePEMSize caps the ca-crl.pem meshtrust writes, which joins
	// several sources; it stays well inside a Secret's 1 MiB.
	MaxCRLBundlePEMSize = 512 << 10
	// MaxCRLsInBundle caps how many CRLs one file may hold.
	MaxCRLsInBundle = 200
	// CRLClockSkew is how far in the future a CRL's thisUpdate may lie, and
	// how far meshtrust backdates the CRLs it signs: clusters' clocks differ,
	// and Envoy refuses a CRL that is not yet valid.
	CRLClockSkew = 5 * time.Minute
)

const blockCRL = "X509 CRL"

// DecodeCRLs decodes every block of data, which must all be X509 CRL blocks
// with nothing but whitespace around them, after refusing data over maxSize.
// Empty data holds no CRL and is no error.
func DecodeCRLs(data []byte, maxSize int) ([]*x509.RevocationList, error) {
	certs, crls, err := DecodeCRLEntry(data, maxSize)
	if err == nil && len(certs) > 0 {
		return nil, &Error{Check: CheckCRLPEM, Value: "a CERTIFICATE block", Err: fmt.Errorf("want only %s blocks", blockCRL)}
	}
	return crls, err
}

// DecodeCRLEntry decodes a mix of CERTIFICATE and X509 CRL blocks, as a
// cluster publishes its intermediates with their CRLs. Like DecodeCRLs it
// refuses any other block or text, and data over maxSize.
func DecodeCRLEntry(data []byte, maxSize int) ([]*x509.Certificate, []*x509.RevocationList, error) {
	if len(data) > maxSize {
		return nil, nil, &Error{Check: CheckCRLSize, Value: fmt.Sprintf("%d bytes", len(data)), Err: ErrTooLarge{Size: len(data), Max: maxSize}}
	}
	var certs []*x509.Certificate
	var crls []*x509.RevocationList
	rest := data
	for i := 0; ; i++ {
		rest = bytes.TrimSpace(rest)
		if len(rest) == 0 {
			return certs, crls, nil
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, nil, &Error{Check: CheckCRLPEM, Value: fmt.Sprintf("block %d", i), Err: fmt.Errorf("unexpected non-PEM data")}
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, nil, &Error{Check: CheckCRLPEM, Value: fmt.Sprintf("block %d", i), Err: fmt.Errorf("malformed PEM block")}
		}
		if len(certs)+len(crls) >= MaxCRLsInBundle+MaxCertificatesInChain {
			return nil, nil, &Error{Check: CheckCRLSize, Value: fmt.Sprintf("more than %d blocks", MaxCRLsInBundle+MaxCertificatesInChain)}
		}
		switch block.Type {
		case blockCRL:
			if len(crls) >= MaxCRLsInBundle {
				return nil, nil, &Error{Check: CheckCRLSize, Value: fmt.Sprintf("more than %d CRLs", MaxCRLsInBundle)}
			}
			crl, err := x509.ParseRevocationList(block.Bytes)
			if err != nil {
				return nil, nil, &Error{Check: CheckCRLParse, Value: fmt.Sprintf("block %d", i), Err: err}
			}
			crls = append(crls, crl)
		case blockCertificate:
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, &Error{Check: CheckCertificate, Value: fmt.Sprintf("block %d", i), Err: err}
			}
			certs = append(certs, c)
		default:
			return nil, nil, &Error{Check: CheckCRLPEM, Value: fmt.Sprintf("block %d has type %q", i, block.Type), Err: fmt.Errorf("want %s or %s", blockCRL, blockCertificate)}
		}
	}
}

// EncodeCRLs PEM-encodes crls one block after another, each ending in a
// newline.
func EncodeCRLs(crls ...*x509.RevocationList) []byte {
	var buf bytes.Buffer
	for _, c := range crls {
		// pem.Encode into a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: blockCRL, Bytes: c.Raw})
	}
	return buf.Bytes()
}

// CRLIssuedBy reports whether ca issued crl the way Envoy (BoringSSL) matches
// them: the CRL names ca's subject, its authority key ID (when both carry
// one) is ca's subject key ID, and its signature verifies with ca's key; ca
// must be a CA allowed to sign CRLs.
func CRLIssuedBy(crl *x509.RevocationList, ca *x509.Certificate) bool {
	if !bytes.Equal(crl.RawIssuer, ca.RawSubject) {
		return false
	}
	if len(crl.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 && !bytes.Equal(crl.AuthorityKeyId, ca.SubjectKeyId) {
		return false
	}
	// CheckSignatureFrom also refuses a parent that is not a CA or whose
	// key usage lacks cRLSign, as BoringSSL does.
	return crl.CheckSignatureFrom(ca) == nil
}

// CRLIssuer returns the certificate among cas that issued crl, or nil.
func CRLIssuer(crl *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if CRLIssuedBy(crl, ca) {
			return ca
		}
	}
	return nil
}

// CheckCRL checks crl as one of the CRLs ca-crl.pem may carry, at now: ca
// issued it (CRLIssuedBy), it is not yet expired and already valid (thisUpdate
// at most CRLClockSkew ahead), it has a nextUpdate (without one a stale CRL
// could never be told from a fresh one), and it carries no critical extension
// (Envoy refuses every certificate such a CRL covers). field names where it
// came from, for the error.
func CheckCRL(crl *x509.RevocationList, ca *x509.Certificate, now time.Time, field string) error {
	name := crl.Issuer.String()
	switch {
	case ca == nil:
		return &Error{Check: CheckCRLIssuer, Field: field, Value: fmt.Sprintf("CRL of %q", name),
			Err: fmt.Errorf("not signed by any CA this cluster trusts (a foreign CA's, or a root Vault has but this cluster's root bundle lacks, as in a root rotation before the renewal)")}
	case !CRLIssuedBy(crl, ca):
		return &Error{Check: CheckCRLIssuer, Field: field, Value: fmt.Sprintf("CRL of %q", name), Err: fmt.Errorf("not signed by %q", ca.Subject.String())}
	case crl.NextUpdate.IsZero():
		return &Error{Check: CheckCRLTime, Field: field, Value: fmt.Sprintf("CRL of %q has no nextUpdate", name)}
	case !now.Before(crl.NextUpdate):
		return &Error{Check: CheckCRLExpired, Field: field, Value: fmt.Sprintf("CRL of %q nextUpdate=%s, now=%s", name, crl.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	case crl.ThisUpdate.After(now.Add(CRLClockSkew)):
		return &Error{Check: CheckCRLTime, Field: field, Value: fmt.Sprintf("CRL of %q thisUpdate=%s is in the future (now=%s)", name, crl.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	for _, ext := range crl.Extensions {
		if ext.Critical {
			return &Error{Check: CheckCRLExtension, Field: field, Value: fmt.Sprintf("CRL of %q has critical extension %s", name, ext.Id)}
		}
	}
	return nil
}

// MissingCRLs returns the certificates of cas that no CRL in crls was issued
// by: istiod's rule for cert-chain.pem, and Envoy's for every chain it
// verifies.
func MissingCRLs(cas []*x509.Certificate, crls []*x509.RevocationList) []*x509.Certificate {
	var missing []*x509.Certificate
	for _, ca := range cas {
		if !slices.ContainsFunc(crls, func(crl *x509.RevocationList) bool { return CRLIssuedBy(crl, ca) }) {
			missing = append(missing, ca)
		}
	}
	return missing
}

// Newer reports whether a supersedes b as the CRL of the same issuer: a
// higher CRL number, or on equal (or absent) numbers a later thisUpdate.
func Newer(a, b *x509.RevocationList) bool {
	if a.Number != nil && b.Number != nil {
		if c := a.Number.Cmp(b.Number); c != 0 {
			return c > 0
		}
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

// RevokedSerials returns the distinct serial numbers crls revoke, in
// lowercase hex, sorted.
func RevokedSerials(crls []*x509.RevocationList) []string {
	var out []string
	for _, crl := range crls {
		for _, e := range crl.RevokedCertificateEntries {
			out = append(out, e.SerialNumber.Text(16))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Revokes reports whether a CRL in crls that issuer issued lists cert.
func Revokes(crls []*x509.RevocationList, issuer, cert *x509.Certificate) bool {
	for _, crl := range crls {
		if !CRLIssuedBy(crl, issuer) {
			continue
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return true
			}
		}
	}
	return false
}

// SortCRLs orders crls by issuer, then authority key ID, then number, then
// bytes, and drops exact duplicates, so that the same set always encodes to
// the same ca-crl.pem.
func SortCRLs(crls []*x509.RevocationList) []*x509.RevocationList {
	out := slices.Clone(crls)
	slices.SortFunc(out, func(a, b *x509.RevocationList) int {
		if c := bytes.Compare(a.RawIssuer, b.RawIssuer); c != 0 {
			return c
		}
		if c := bytes.Compare(a.AuthorityKeyId, b.AuthorityKeyId); c != 0 {
			return c
		}
		if a.Number != nil && b.Number != nil {
			if c := a.Number.Cmp(b.Number); c != 0 {
				return c
			}
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	return slices.CompactFunc(out, func(a, b *x509.RevocationList) bool { return bytes.Equal(a.Raw, b.Raw) })
}

// SameCRLs reports whether a and b hold the same CRLs, in any order.
func SameCRLs(a, b []*x509.RevocationList) bool {
	x, y := SortCRLs(a), SortCRLs(b)
	return slices.EqualFunc(x, y, func(p, q *x509.RevocationList) bool { return bytes.Equal(p.Raw, q.Raw) })
}

// NewEmptyCRL signs, with ca's key, a CRL that revokes nothing and stays
// valid for as long as ca does: thisUpdate CRLClockSkew before now,
// nextUpdate at ca's notAfter, number now's Unix time. A cluster's
// intermediate revokes nothing (istiod never revokes a workload
// certificate), so its CRL needs no refresh; it exists because istiod and
// Envoy require a CRL from every CA of a chain once any CA has one. The key
// must be ca's; it is never part of an error.
func NewEmptyCRL(ca *x509.Certificate, key crypto.Signer, now time.Time) (*x509.RevocationList, error) {
	if err := KeyMatchesCertificate(key, ca); err != nil {
		return nil, err
	}
	if !now.Before(ca.NotAfter) {
		return nil, &Error{Check: CheckExpired, Value: fmt.Sprintf("%q notAfter=%s", ca.Subject.String(), ca.NotAfter.UTC().Format(time.RFC3339))}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(now.Unix()),
		ThisUpdate: now.Add(-CRLClockSkew),
		NextUpdate: ca.NotAfter,
	}, ca, key)
	if err != nil {
		// crypto/x509 refuses a CA without cRLSign or a subject key ID.
		return nil, &Error{Check: CheckCRLIssuer, Value: fmt.Sprintf("signing a CRL for %q", ca.Subject.String()), Err: err}
	}
	return x509.ParseRevocationList(der)
}
