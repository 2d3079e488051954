package status

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// IssuedCRL is one of Vault's CRLs with the issuer that signed it.
type IssuedCRL struct {
	// Name is how Vault calls the issuer (its name, else its ID).
	Name string
	// Issuer is the issuer's certificate.
	Issuer *x509.Certificate
	// CRL is Vault's current CRL of it.
	CRL *x509.RevocationList
}

// CRLInfo describes a cluster's ca-crl.pem.
type CRLInfo struct {
	// Present is true when cacerts holds a ca-crl.pem.
	Present bool `json:"present"`
	// CRLs is how many CRLs it holds.
	CRLs int `json:"crls"`
	// NextUpdate is the earliest nextUpdate among them: when the first
	// expires, proxies refuse every chain it covers.
	NextUpdate time.Time `json:"nextUpdate,omitzero"`
	// NextUpdateIn is NextUpdate minus now, rounded.
	NextUpdateIn string `json:"nextUpdateIn,omitempty"`
	// RevokedSerials counts the distinct serials revoked.
	RevokedSerials int `json:"revokedSerials"`
	// Error says why the file does not parse.
	Error string `json:"error,omitempty"`

	crls []*x509.RevocationList
}

// describeCRL reads s's ca-crl.pem, adds a problem for each expired CRL
// and a warning for each of Vault's CRLs the cluster lags behind, and
// returns the description (nil for a layout that cannot carry one).
func describeCRL(c *Cluster, s *corev1.Secret, now time.Time, vault []IssuedCRL) ([]string, *CRLInfo) {
	if c.Layout != string(pki.LayoutIstio) {
		if len(vault) > 0 && c.Layout != "" {
			return []string{fmt.Sprintf("%s: the %s layout cannot carry a CRL, so revocations do not reach its proxies", c.Context, c.Layout)}, nil
		}
		return nil, nil
	}
	info := &CRLInfo{}
	raw := s.Data[pki.CRLKey]
	if len(strings.TrimSpace(string(raw))) == 0 {
		if len(vault) > 0 {
			return []string{fmt.Sprintf("%s: cacerts carries no %s, so revocations do not reach its proxies", c.Context, pki.CRLKey)}, info
		}
		return nil, info
	}
	info.Present = true
	crls, err := pki.DecodeCRLs(raw, pki.MaxCRLBundlePEMSize)
	if err != nil {
		info.Error = err.Error()
		c.Problems = append(c.Problems, fmt.Sprintf("%s does not parse: %v", pki.CRLKey, err))
		return nil, info
	}
	info.crls, info.CRLs, info.RevokedSerials = crls, len(crls), len(pki.RevokedSerials(crls))
	for _, crl := range crls {
		if info.NextUpdate.IsZero() || crl.NextUpdate.Before(info.NextUpdate) {
			info.NextUpdate = crl.NextUpdate.UTC()
		}
		if !now.Before(crl.NextUpdate) {
			c.Problems = append(c.Problems, fmt.Sprintf("%s: the CRL of %q expired at %s: proxies refuse every chain it covers", pki.CRLKey, crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	if !info.NextUpdate.IsZero() {
		info.NextUpdateIn = FormatDuration(info.NextUpdate.Sub(now))
	}
	revokedBy := crls
	for _, v := range vault {
		revokedBy = append(revokedBy, v.CRL)
	}
	if parent := issuerOf(c); parent != nil && pki.Revokes(revokedBy, parent, c.cert) {
		c.Problems = append(c.Problems, fmt.Sprintf("intermediate serial %s is revoked: every proxy refuses the workload certificates it signs; renew it once the cluster is trusted again", pki.FormatSerial(c.cert.SerialNumber)))
	}
	var warnings []string
	for _, v := range vault {
		if !pki.Contains(c.roots, v.Issuer) && !pki.Contains(c.chain, v.Issuer) {
			continue // a root this cluster does not trust (yet)
		}
		if lag := Lags(crls, v); lag != "" {
			warnings = append(warnings, fmt.Sprintf("%s: %s", c.Context, lag))
		}
	}
	return warnings, info
}

// Lags says how crls fall behind Vault's CRL v, "" when they carry it (or a
// newer one).
func Lags(crls []*x509.RevocationList, v IssuedCRL) string {
	var have *x509.RevocationList
	for _, crl := range crls {
		if pki.CRLIssuedBy(crl, v.Issuer) && (have == nil || pki.Newer(crl, have)) {
			have = crl
		}
	}
	switch {
	case have == nil:
		return fmt.Sprintf("%s carries no CRL of %s; Vault's is #%v", pki.CRLKey, v.Name, v.CRL.Number)
	case pki.Newer(v.CRL, have):
		return fmt.Sprintf("%s carries CRL #%v of %s, Vault's is #%v (it lags)", pki.CRLKey, have.Number, v.Name, v.CRL.Number)
	}
	return ""
}

// Carries reports whether the CRL file text holds each of want that issuers
// the cluster trusts (roots) signed, or a newer one; detail names the first
// it lacks.
func Carries(text []byte, roots []*x509.Certificate, want []IssuedCRL) (bool, string) {
	crls, err := pki.DecodeCRLs(text, pki.MaxCRLBundlePEMSize)
	if err != nil {
		return false, err.Error()
	}
	if len(crls) == 0 {
		return false, "no " + pki.CRLKey
	}
	for _, v := range want {
		if !pki.Contains(roots, v.Issuer) {
			continue
		}
		if lag := Lags(crls, v); lag != "" {
			return false, lag
		}
	}
	return true, ""
}

// issuerOf is the certificate that signed the cluster's intermediate: the
// next one of its chain, else a root of its bundle.
func issuerOf(c *Cluster) *x509.Certificate {
	if c.cert == nil {
		return nil
	}
	if len(c.chain) > 1 {
		return c.chain[1]
	}
	return pki.IssuerIn(c.cert, c.roots)
}
