package issuer

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// entry is one cluster's intermediates with the CRLs they issued, as it
// travels through Vault's CRL exchange.
type entry struct {
	certs []*x509.Certificate
	crls  []*x509.RevocationList
}

// pem renders the entry canonically (certificates by fingerprint, then the
// CRLs sorted), so that the same entry always gives the same bytes and an
// unchanged one is never written again.
func (e entry) pem() string {
	certs := slices.Clone(e.certs)
	slices.SortFunc(certs, func(a, b *x509.Certificate) int { return strings.Compare(pki.Fingerprint(a), pki.Fingerprint(b)) })
	return string(pki.EncodeCertificates(certs...)) + string(pki.EncodeCRLs(pki.SortCRLs(e.crls)...))
}

// checkEntry keeps what a cluster may put in the exchange for trustDomain:
// unexpired intermediates name-constrained to exactly trustDomain (so that
// no cluster can speak for another's CAs), each with a valid CRL it issued.
// What it drops, problem says. An entry never makes a certificate trusted;
// it only supplies the CRL Envoy needs before it accepts chains that are
// trusted anyway. Which of them chain to a root the cluster trusts is the
// syncer's call (checkPeerCRLs), against the roots cacerts carries: the
// trust anchors ca.crt lists, and a root retired or rolled back that the
// syncer keeps for its grace, whose intermediates' workload certificates
// are still presented meanwhile. The issuer knows only the first.
func checkEntry(text, trustDomain string, now time.Time) (entry, string) {
	certs, crls, err := pki.DecodeCRLEntry([]byte(text), pki.MaxCRLPEMSize)
	if err != nil {
		return entry{}, err.Error()
	}
	var problems []string
	var out entry
	for _, c := range certs {
		name := fmt.Sprintf("intermediate %q (serial %x)", c.Subject.CommonName, c.SerialNumber)
		switch {
		case !c.IsCA || pki.IsSelfSigned(c):
			problems = append(problems, name+" is not an intermediate CA")
			continue
		case !slices.Equal(c.PermittedURIDomains, []string{trustDomain}):
			problems = append(problems, fmt.Sprintf("%s is constrained to %v, not to the entry's trust domain %s", name, c.PermittedURIDomains, trustDomain))
			continue
		case !now.Before(c.NotAfter):
			continue // expired: nothing of it needs a CRL any more
		}
		var mine []*x509.RevocationList
		for _, crl := range crls {
			if pki.CRLIssuedBy(crl, c) {
				if err := pki.CheckCRL(crl, c, now, "CRL exchange entry "+trustDomain); err != nil {
					problems = append(problems, err.Error())
					continue
				}
				mine = append(mine, crl)
			}
		}
		if len(mine) == 0 {
			problems = append(problems, name+" has no valid CRL")
			continue
		}
		out.certs = append(out.certs, c)
		out.crls = append(out.crls, newest(mine))
	}
	for _, crl := range crls {
		if pki.CRLIssuer(crl, certs) == nil {
			problems = append(problems, fmt.Sprintf("a CRL of %q is not issued by any intermediate of the entry", crl.Issuer.String()))
		}
	}
	return out, strings.Join(problems, "; ")
}

// newest is the CRL that supersedes the others of the same issuer.
func newest(crls []*x509.RevocationList) *x509.RevocationList {
	best := crls[0]
	for _, c := range crls[1:] {
		if pki.Newer(c, best) {
			best = c
		}
	}
	return best
}

// ownEntry joins what the syncer published in the exchange ConfigMap for
// each Certificate of this cluster (crlexchange.OwnKey), checked like any
// entry.
func ownEntry(cm *corev1.ConfigMap, trustDomain string, now time.Time) (entry, string) {
	if cm == nil {
		return entry{}, ""
	}
	var all bytes.Buffer
	for k, v := range cm.Data {
		if crlexchange.IsOwnKey(k) {
			all.WriteString(v)
			all.WriteByte('\n')
		}
	}
	e, problem := checkEntry(all.String(), trustDomain, now)
	// An intermediate that several Certificates of the cluster share
	// appears once, with its newest CRL.
	var out entry
	for i, c := range e.certs {
		j := slices.IndexFunc(out.certs, c.Equal)
		switch {
		case j < 0:
			out.certs = append(out.certs, c)
			out.crls = append(out.crls, e.crls[i])
		case pki.Newer(e.crls[i], out.crls[j]):
			out.crls[j] = e.crls[i]
		}
	}
	return out, problem
}
