package workload

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// CheckRevocation checks a verified chain (leaf first, trust anchor last)
// against crls the way Envoy does with a CRL configured (BoringSSL with
// X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL, Istio never sets
// only_verify_leaf_cert_crl):
//   - every certificate of the chain, the anchor included, needs a CRL from
//     its issuer (the next certificate up; the anchor's own for the anchor):
//     same issuer name, authority key ID matching, signature verifying with
//     the issuer's key, which must allow cRLSign. None: "unable to get
//     certificate CRL", and the chain is refused even though nothing in it
//     is revoked;
//   - of several, one valid now wins over one that is not, then the newest;
//   - the chosen CRL must be valid now (thisUpdate passed, nextUpdate not):
//     an expired CRL refuses every chain it covers;
//   - a certificate the CRL lists is refused ("certificate revoked").
//
// It is a cross-check of Envoy's rule, written here because there is no
// Envoy in the lab; the proof that the CRLs get there is istiod's own
// istio-ca-crl.
func CheckRevocation(chain []*x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
	for i, c := range chain {
		issuer := c
		if i+1 < len(chain) {
			issuer = chain[i+1]
		}
		var best *x509.RevocationList
		for _, crl := range crls {
			if !pki.CRLIssuedBy(crl, issuer) {
				continue
			}
			if best == nil || betterCRL(crl, best, now) {
				best = crl
			}
		}
		who := fmt.Sprintf("%q (serial %x)", c.Subject.String(), c.SerialNumber)
		switch {
		case best == nil:
			return fmt.Errorf("unable to get certificate CRL: no CRL of %q for %s", issuer.Subject.String(), who)
		case now.Before(best.ThisUpdate):
			return fmt.Errorf("CRL is not yet valid: the CRL of %q for %s has thisUpdate %s", issuer.Subject.String(), who, best.ThisUpdate.UTC().Format(time.RFC3339))
		case !best.NextUpdate.IsZero() && now.After(best.NextUpdate):
			return fmt.Errorf("CRL has expired: the CRL of %q for %s had nextUpdate %s", issuer.Subject.String(), who, best.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range best.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return fmt.Errorf("certificate revoked: %s is on the CRL of %q", who, issuer.Subject.String())
			}
		}
	}
	return nil
}

func validAt(crl *x509.RevocationList, now time.Time) bool {
	return !now.Before(crl.ThisUpdate) && (crl.NextUpdate.IsZero() || !now.After(crl.NextUpdate))
}

// betterCRL is BoringSSL's preference between two CRLs of one issuer.
func betterCRL(a, b *x509.RevocationList, now time.Time) bool {
	if va, vb := validAt(a, now), validAt(b, now); va != vb {
		return va
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}
