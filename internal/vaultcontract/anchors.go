package vaultcontract

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// Trust anchors: which roots every cluster's ca.crt lists.
//
// Vault keeps no mark of which of a PKI mount's self-signed issuers are
// meshtrust's roots: an unrelated certificate imported into the mount looks
// like one. So `meshtrust vault bootstrap` records the set it generated,
// imported or adopted in each of those roots' manual_chain: the root first
// (Vault requires it), then every other anchor. Vault then returns exactly
// that list as the ca_chain of the root and of every certificate it signs,
// and the issuer builds ca.crt from the live self-signed certificates of the
// signing issuer's ca_chain (<mount>/issuer/<ref>/json) alone, never from
// the mount's list of issuers. A root rotation is bootstrap adding root B:
// A's chain becomes [A, B] and B's [B, A], so clusters on either trust both;
// retire-root takes the old root out of the others' chains.

// AnchorChain is the manual_chain bootstrap gives the anchor self: self,
// then the other anchors in the order given (self, if listed, is skipped).
func AnchorChain(self string, anchors []string) []string {
	out := []string{self}
	for _, a := range anchors {
		if a != self {
			out = append(out, a)
		}
	}
	return out
}

// TrustAnchors are the roots a certificate signed by a Vault issuer is
// trusted under, what every cluster's ca.crt lists: the live self-signed
// certificates among the issuer's own certificate and its ca_chain
// (IssuerJSONPath). The issuer builds ca.crt with it, and the same set is
// the roots whose CRLs clusters carry (CRLIssuers) and that other clusters'
// CRL exchange entries must chain to, so that a stray self-signed issuer of
// the mount gives neither an anchor nor a CRL.
func TrustAnchors(issuer *x509.Certificate, caChain []*x509.Certificate, now time.Time) []*x509.Certificate {
	return pki.LiveRoots(append([]*x509.Certificate{issuer}, caChain...), now)
}

// CRLIssuers are the Vault CAs whose CRLs every cluster signing under the
// issuer carries in ca-crl.pem: its TrustAnchors, and, when the issuer is
// an intermediate Vault holds, it and the other intermediates of its
// ca_chain, which sit in the clusters' cert-chain.pem too (istiod wants a
// CRL of every CA there, Envoy of every CA of a peer's chain). The anchors
// come first, oldest first, then the intermediates in chain order. Nothing
// else of the mount contributes a CRL.
func CRLIssuers(issuer *x509.Certificate, caChain []*x509.Certificate, now time.Time) []*x509.Certificate {
	out := TrustAnchors(issuer, caChain, now)
	for _, c := range append([]*x509.Certificate{issuer}, caChain...) {
		if c.IsCA && !pki.IsSelfSigned(c) && !now.Before(c.NotBefore) && now.Before(c.NotAfter) && !pki.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// FindIssuers looks among the mount's issuers (ids, as Vault lists them)
// for the CAs of want, reading each with read until all are found, and
// returns what read gave for those, in list order. A CA of want that is
// no issuer of the mount (a root being retired, until its chain entries
// go) is not found; read returning a nil certificate skips that ID.
func FindIssuers[T any](ctx context.Context, ids []string, want []*x509.Certificate, read func(ctx context.Context, id string) (T, *x509.Certificate, error)) ([]T, error) {
	var out []T
	for _, id := range ids {
		if len(out) == len(want) {
			break
		}
		v, cert, err := read(ctx, id)
		if err != nil {
			return nil, err
		}
		if cert != nil && pki.Contains(want, cert) {
			out = append(out, v)
		}
	}
	return out, nil
}

// IssuerJSONPath is the issuer's certificate and ca_chain, readable without
// a token: where the issuer reads the trust anchors of the issuer it signs
// with (ref "" is the mount's default issuer).
func IssuerJSONPath(mount, ref string) string {
	if ref == "" {
		ref = "default"
	}
	return mount + "/issuer/" + ref + "/json"
}
