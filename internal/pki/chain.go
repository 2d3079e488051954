package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"
)

// Chain is a certificate chain ordered from the bottom certificate up.
type Chain struct {
	// Certs runs from the bottom certificate to the highest certificate that
	// is not self-signed. It is empty only if the input was a lone root.
	Certs []*x509.Certificate
	// Root is the self-signed certificate at the top, if the input held one.
	Root *x509.Certificate
}

// OrderChain de-duplicates certs, orders them into one chain from the bottom
// up, and splits off a self-signed root. It fails if the certificates do not
// form exactly one unbroken chain. The input order does not matter.
func OrderChain(certs []*x509.Certificate) (Chain, error) {
	if len(certs) == 0 {
		return Chain{}, &Error{Check: CheckChainOrder, Value: "no certificates", Err: ErrNoPEMData}
	}
	uniq := slices.Clone(certs)
	slices.SortFunc(uniq, func(a, b *x509.Certificate) int { return bytes.Compare(a.Raw, b.Raw) })
	uniq = slices.CompactFunc(uniq, func(a, b *x509.Certificate) bool { return bytes.Equal(a.Raw, b.Raw) })
	if len(uniq) > MaxCertificatesInChain {
		return Chain{}, &Error{Check: CheckSize, Value: fmt.Sprintf("%d certificates", len(uniq)), Err: fmt.Errorf("more than %d", MaxCertificatesInChain)}
	}

	// parent[i] is the index of the certificate that signed uniq[i], or -1.
	// A self-signed certificate has no parent; a certificate with several
	// candidate parents or a parent with several children makes the input a
	// tree, not a chain.
	n := len(uniq)
	parent := make([]int, n)
	children := make([]int, n)
	for i, c := range uniq {
		parent[i] = -1
		if IsSelfSigned(c) {
			continue
		}
		for j, p := range uniq {
			if i == j || !issuedBy(c, p) {
				continue
			}
			if parent[i] != -1 {
				return Chain{}, &Error{Check: CheckChainOrder, Value: fmt.Sprintf("%q has more than one issuer in the chain", c.Subject.String())}
			}
			parent[i] = j
			children[j]++
		}
	}
	bottom := -1
	for i := range uniq {
		if children[i] > 1 {
			return Chain{}, &Error{Check: CheckChainOrder, Value: fmt.Sprintf("%q issued more than one certificate in the chain", uniq[i].Subject.String())}
		}
		if children[i] == 0 {
			if bottom != -1 {
				return Chain{}, &Error{Check: CheckChainOrder, Value: fmt.Sprintf("%q and %q do not chain", uniq[bottom].Subject.String(), uniq[i].Subject.String()), Err: errors.New("chain is broken or holds unrelated certificates")}
			}
			bottom = i
		}
	}
	if bottom == -1 {
		// Every certificate has a child: a signature loop.
		return Chain{}, &Error{Check: CheckChainOrder, Value: "signature loop", Err: errors.New("chain is malformed")}
	}
	var out Chain
	for i, steps := bottom, 0; i != -1; i, steps = parent[i], steps+1 {
		if steps > n {
			return Chain{}, &Error{Check: CheckChainOrder, Value: "signature loop", Err: errors.New("chain is malformed")}
		}
		if parent[i] == -1 && IsSelfSigned(uniq[i]) {
			out.Root = uniq[i]
			break
		}
		out.Certs = append(out.Certs, uniq[i])
	}
	if len(out.Certs)+boolToInt(out.Root != nil) != n {
		return Chain{}, &Error{Check: CheckChainOrder, Value: fmt.Sprintf("%d of %d certificates are not in the chain", n-len(out.Certs)-boolToInt(out.Root != nil), n), Err: errors.New("chain holds unrelated certificates")}
	}
	return out, nil
}

// SplitRoots separates self-signed certificates from the rest, keeping order.
func SplitRoots(certs []*x509.Certificate) (others, roots []*x509.Certificate) {
	for _, c := range certs {
		if IsSelfSigned(c) {
			roots = append(roots, c)
		} else {
			others = append(others, c)
		}
	}
	return others, roots
}

// LiveRoots keeps the self-signed certificates of certs that are valid at
// now, without duplicates, oldest first so that the order is stable. It is
// how the issuer turns what Vault knows of a mount into ca.crt.
func LiveRoots(certs []*x509.Certificate, now time.Time) []*x509.Certificate {
	var roots []*x509.Certificate
	for _, c := range certs {
		if Contains(roots, c) || !IsSelfSigned(c) || now.Before(c.NotBefore) || now.After(c.NotAfter) {
			continue
		}
		roots = append(roots, c)
	}
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].NotBefore.Before(roots[j].NotBefore) })
	return roots
}

// IsSelfSigned reports whether c's signature verifies with its own key and its
// issuer is its subject.
func IsSelfSigned(c *x509.Certificate) bool {
	return issuedBy(c, c)
}

// issuedBy reports whether parent signed child.
func issuedBy(child, parent *x509.Certificate) bool {
	return bytes.Equal(child.RawIssuer, parent.RawSubject) && child.CheckSignatureFrom(parent) == nil
}

// IssuerIn returns the certificate in candidates that signed c, or nil.
func IssuerIn(c *x509.Certificate, candidates []*x509.Certificate) *x509.Certificate {
	for _, p := range candidates {
		if issuedBy(c, p) {
			return p
		}
	}
	return nil
}

// Fingerprint is the lowercase hex SHA-256 of the certificate's DER bytes.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// FormatSerial renders a serial number as Vault and openssl print it:
// colon-separated hex bytes ("2f:a3:01").
func FormatSerial(n *big.Int) string {
	b := n.Bytes()
	if len(b) == 0 {
		return "00"
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// Fingerprints returns Fingerprint of each certificate, in order.
func Fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, 0, len(certs))
	for _, c := range certs {
		out = append(out, Fingerprint(c))
	}
	return out
}

// Contains reports whether certs holds a certificate byte-equal to c.
func Contains(certs []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(certs, func(x *x509.Certificate) bool { return bytes.Equal(x.Raw, c.Raw) })
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
