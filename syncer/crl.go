package syncer

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// ca-crl.pem: the CRLs every proxy of the cluster checks peers against.
// istiod takes the file only if it holds a CRL of every CA in cert-chain.pem
// (istio/istio#61075), and Envoy refuses a peer unless it has a CRL of every
// CA in the peer's chain, never an expired one. So the syncer writes:
//   - Vault's CRL of every root (and Vault intermediate) this cluster trusts,
//     from the issuer's exchange ConfigMap;
//   - a CRL of each of this cluster's own unexpired intermediates, which the
//     syncer signs once with the intermediate's key (it revokes nothing and
//     lasts as long as the intermediate) and publishes in the exchange
//     ConfigMap for the issuer to put into Vault;
//   - the other clusters' intermediates' CRLs, which the issuer read from
//     Vault.
//
// Every CRL is checked again here before it is written. A source that fails
// (garbage, too large, expired, a CRL number going backwards) leaves the
// previous ca-crl.pem as it is; a CRL of a CA this cluster does not trust is
// left out. Either way the Certificate gets a Warning event, CRLSynced=False
// and meshtrust_crl_validation_failures_total{check}.

// ConditionCRLSynced is the Certificate condition about ca-crl.pem: True when
// cacerts carries a complete, valid set of CRLs, False with the reason when
// it does not or cannot.
const ConditionCRLSynced cmapi.CertificateConditionType = "CRLSynced"

// CRLSigner signs, with key, an empty CRL for ca; pki.NewEmptyCRL in
// production, a stand-in in tests.
type CRLSigner func(ca *x509.Certificate, key crypto.Signer, now time.Time) (*x509.RevocationList, error)

// crlInput is what the CRL part of a plan looks at.
type crlInput struct {
	now    time.Time
	layout pki.Layout
	// bundle is the verified source bundle, roots merged for a transition.
	bundle *pki.Bundle
	// existing is cacerts when meshtrust wrote it for this Certificate: its
	// ca-crl.pem and intermediate count as this syncer's own earlier work.
	existing *corev1.Secret
	// exchange is the issuer's exchange ConfigMap, nil if absent.
	exchange    *corev1.ConfigMap
	exchangeKey types.NamespacedName
	// namespacedIssuer is set when a namespaced VaultIssuer signs the
	// Certificate: it takes part in no exchange, so nothing carries CRLs.
	namespacedIssuer bool
	ownKey           string
	sign             CRLSigner
	delay            time.Duration
	guard            time.Duration
}

// crlPlan is what the CRL part decided.
type crlPlan struct {
	// active is true when CRLs are in play for the target at all.
	active bool
	// exchangeKey is the exchange ConfigMap the own entry goes to.
	exchangeKey types.NamespacedName
	// pem is ca-crl.pem to write; nil leaves the key out.
	pem []byte
	// own is the syncer's entry to publish in the exchange ConfigMap, nil
	// when it is there already.
	own *string
	// hold keeps the new intermediate out of cacerts for now.
	hold *decision.Hold
	// refusal is a CRL input refused (Warning event, condition, metric).
	refusal   *decision.Refusal
	events    []Event
	condition *Condition
	// nextUpdate, revoked and count describe the ca-crl.pem written.
	nextUpdate time.Time
	revoked    int
	count      int
}

func (p *crlPlan) warn(reason, format string, args ...any) {
	p.events = append(p.events, Event{Type: corev1.EventTypeWarning, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// problem is one refused CRL input; fatal ones make the previous ca-crl.pem
// stay.
type problem struct {
	err   error
	fatal bool
}

// planCRL decides ca-crl.pem, the syncer's published entry and whether the
// new intermediate waits for its CRL to propagate.
func planCRL(in crlInput) crlPlan {
	var p crlPlan
	var existingPEM []byte
	if in.existing != nil {
		existingPEM = in.existing.Data[pki.CRLKey]
	}
	if in.layout == pki.LayoutTLS {
		if in.exchange != nil {
			msg := fmt.Sprintf("the tls layout cannot carry a CRL (istiod reads ca-crl.pem only next to ca-cert.pem), so revocations do not reach this cluster's proxies; annotate the Certificate with %s: \"istio\"", AnnotationLayout)
			p.warn(decision.ReasonCRLNotCarried, "%s", msg)
			p.condition = &Condition{Status: cmmeta.ConditionFalse, Reason: decision.ReasonCRLNotCarried, Message: msg}
		}
		return p
	}
	if in.exchange == nil && len(bytes.TrimSpace(existingPEM)) == 0 {
		if in.namespacedIssuer {
			// A VaultIssuer user expects what a VaultClusterIssuer gives;
			// say that revocations stop short of the proxies.
			msg := fmt.Sprintf("a namespaced %s takes part in no CRL exchange, so ca-crl.pem is not written and revocations do not reach this cluster's proxies; issue the Certificate from a %s", crlexchange.KindIssuer, crlexchange.KindClusterIssuer)
			p.warn(decision.ReasonCRLNotCarriedIssuer, "%s", msg)
			p.condition = &Condition{Status: cmmeta.ConditionFalse, Reason: decision.ReasonCRLNotCarriedIssuer, Message: msg}
		}
		return p
	}
	p.active = true
	if in.exchange != nil {
		p.exchangeKey = in.exchangeKey
	}
	field := func(key string) string { return fmt.Sprintf("ConfigMap %s key %s", in.exchangeKey, key) }

	existingCRLs, err := pki.DecodeCRLs(existingPEM, pki.MaxCRLBundlePEMSize)
	if err != nil {
		p.warn(decision.ReasonInvalidCRL, "%s of Secret %s/%s does not parse and is rebuilt: %v", pki.CRLKey, in.existing.Namespace, in.existing.Name, err)
		existingCRLs = nil
	}
	installed := installedBundle(in.existing)
	var status *crlexchange.Status
	var problems []problem
	if in.exchange != nil {
		if text := in.exchange.Data[crlexchange.KeyStatus]; text != "" {
			s, err := crlexchange.DecodeStatus(text)
			if err != nil {
				problems = append(problems, problem{fmt.Errorf("%s: %w", field(crlexchange.KeyStatus), err), true})
			} else {
				status = &s
			}
		}
	}

	ownCerts, ownCRLs := p.ownCRLs(in, installed, existingCRLs)
	if in.exchange != nil {
		entry := string(pki.EncodeCertificates(ownCerts...)) + string(pki.EncodeCRLs(pki.SortCRLs(ownCRLs)...))
		if entry != in.exchange.Data[in.ownKey] {
			p.own = &entry
		}
	}
	if status != nil {
		var inst *x509.Certificate
		if installed != nil {
			inst = installed.Cert
		}
		hold, w := decision.CRLPropagation(decision.CRLGateInput{Now: in.now, New: in.bundle.Cert, Installed: inst,
			Published: status.Published, Peers: len(status.Peers), Delay: in.delay, Guard: in.guard})
		p.hold = hold
		if w != nil {
			p.warn(w.Reason, "%s", w.Message)
		}
	}

	trusted := append(slices.Clone(in.bundle.Roots), in.bundle.Intermediates...)
	var vaultCRLs, peerCRLs []*x509.RevocationList
	if in.exchange != nil {
		var ps []problem
		vaultCRLs, ps = checkVaultCRLs(in.exchange.Data[crlexchange.KeyVaultCRLs], trusted, existingCRLs, in.now, field(crlexchange.KeyVaultCRLs))
		problems = append(problems, ps...)
		peerCRLs, ps = checkPeerCRLs(in.exchange.Data[crlexchange.KeyPeers], in.bundle.Roots, existingCRLs, in.now, field(crlexchange.KeyPeers))
		problems = append(problems, ps...)
	}
	fatal := slices.ContainsFunc(problems, func(pr problem) bool { return pr.fatal })
	if len(problems) > 0 {
		err := problems[0].err
		check := string(pki.CheckOf(err))
		if check == "" {
			check = decision.ReasonInvalidCRL
		}
		keep := "that CRL is left out"
		if fatal {
			keep = fmt.Sprintf("%s keeps the CRLs it had", pki.CRLKey)
		}
		p.refusal = &decision.Refusal{Reason: decision.ReasonInvalidCRL, Check: check, Message: fmt.Sprintf("%v; %s", err, keep)}
	}

	var result []*x509.RevocationList
	if fatal || in.exchange == nil {
		// The previous file stands, but for this cluster's own CRLs, which
		// the syncer makes itself, and anything expired meanwhile.
		for _, crl := range existingCRLs {
			if in.now.Before(crl.NextUpdate) && pki.CRLIssuer(crl, ownCerts) == nil {
				result = append(result, crl)
			}
		}
		result = append(result, ownCRLs...)
	} else {
		result = append(append(append(result, vaultCRLs...), ownCRLs...), peerCRLs...)
		// A root Vault no longer serves (retired, kept for the root grace)
		// keeps its last CRL until that expires.
		for _, r := range in.bundle.Roots {
			if slices.ContainsFunc(result, func(c *x509.RevocationList) bool { return pki.CRLIssuedBy(c, r) }) {
				continue
			}
			for _, crl := range existingCRLs {
				if pki.CRLIssuedBy(crl, r) && pki.CheckCRL(crl, r, in.now, pki.CRLKey) == nil {
					result = append(result, crl)
					break
				}
			}
		}
	}
	result = pki.SortCRLs(result)
	p.decide(in, result, existingCRLs, existingPEM, installed, status)
	return p
}

// decide picks ca-crl.pem from the composed CRLs: only a file istiod will
// take (a CRL of every CA in the chain it signs with), only once every
// enrolled cluster has published its CRL, and the previous bytes whenever
// the CRLs are the same.
func (p *crlPlan) decide(in crlInput, result, existingCRLs []*x509.RevocationList, existingPEM []byte, installed *pki.Bundle, status *crlexchange.Status) {
	chainBundle := in.bundle
	if p.hold != nil && installed != nil {
		chainBundle = installed
	}
	chain, err := chainBundle.FullChain()
	if err != nil {
		chain = []*x509.Certificate{chainBundle.Cert}
	}
	keep := func() {
		if len(bytes.TrimSpace(existingPEM)) > 0 {
			p.pem = existingPEM
		}
	}
	if missing := pki.MissingCRLs(chain, result); len(missing) > 0 {
		var names []string
		for _, m := range missing {
			names = append(names, fmt.Sprintf("%q", m.Subject.String()))
		}
		msg := fmt.Sprintf("no valid CRL of %s yet (the issuer's %s has none), and istiod takes a %s only with a CRL of every CA it signs with; %s",
			strings.Join(names, ", "), in.exchangeKey, pki.CRLKey, keptOrNone(existingPEM))
		p.warn(decision.ReasonCRLIncomplete, "%s", msg)
		p.setCondition(decision.ReasonCRLIncomplete, msg)
		keep()
		p.describe(in.now)
		return
	}
	if pending := pendingPeers(status); len(bytes.TrimSpace(existingPEM)) == 0 && len(pending) > 0 {
		msg := fmt.Sprintf("clusters %s are enrolled but have published no CRL in Vault's CRL exchange yet; carrying CRLs before they do would make this cluster's proxies refuse their workloads, so %s is written once they have", strings.Join(pending, ", "), pki.CRLKey)
		p.warn(decision.ReasonCRLWaitingOnPeers, "%s", msg)
		p.setCondition(decision.ReasonCRLWaitingOnPeers, msg)
		return
	}
	switch pem := pki.EncodeCRLs(result...); {
	case len(existingPEM) > 0 && pki.SameCRLs(result, existingCRLs):
		p.pem = existingPEM
	case len(pem) > pki.MaxCRLBundlePEMSize:
		msg := fmt.Sprintf("the CRLs to carry make %d bytes, over the %d byte limit of %s; %s", len(pem), pki.MaxCRLBundlePEMSize, pki.CRLKey, keptOrNone(existingPEM))
		p.refusal = &decision.Refusal{Reason: decision.ReasonInvalidCRL, Check: string(pki.CheckCRLSize), Message: msg}
		keep()
	default:
		p.pem = pem
	}
	if p.refusal != nil {
		p.setCondition(p.refusal.Reason, p.refusal.Message)
	}
	p.describe(in.now)
	p.revokedIntermediates(in, installed, result)
	if p.condition == nil {
		p.condition = &Condition{Status: cmmeta.ConditionTrue, Reason: decision.ReasonCRLSynced,
			Message: fmt.Sprintf("%s holds %d CRLs, %d revoked serials, earliest nextUpdate %s", pki.CRLKey, p.count, p.revoked, p.nextUpdate.UTC().Format(time.RFC3339))}
	}
}

func (p *crlPlan) setCondition(reason, msg string) {
	p.condition = &Condition{Status: cmmeta.ConditionFalse, Reason: reason, Message: msg}
}

// describe fills in what the metrics show about the file written.
func (p *crlPlan) describe(now time.Time) {
	crls, err := pki.DecodeCRLs(p.pem, pki.MaxCRLBundlePEMSize)
	if err != nil {
		return
	}
	p.count, p.revoked = len(crls), len(pki.RevokedSerials(crls))
	for _, c := range crls {
		if p.nextUpdate.IsZero() || c.NextUpdate.Before(p.nextUpdate) {
			p.nextUpdate = c.NextUpdate
		}
	}
}

// revokedIntermediates warns when a CRL the cluster carries lists its own
// intermediate: every proxy, this cluster's too, then refuses its workloads.
func (p *crlPlan) revokedIntermediates(in crlInput, installed *pki.Bundle, crls []*x509.RevocationList) {
	for _, b := range []*pki.Bundle{installed, in.bundle} {
		if b == nil {
			continue
		}
		parent := b.ChainRoot()
		if len(b.Intermediates) > 0 {
			parent = b.Intermediates[0]
		}
		if parent != nil && pki.Revokes(crls, parent, b.Cert) {
			p.warn(decision.ReasonIntermediateRevoked, "intermediate serial %x is on its issuer's CRL: every proxy of the mesh, this cluster's too, refuses the workload certificates it signed; once the cluster is trusted again, renew it (cmctl renew %s)", b.Cert.SerialNumber, b.Cert.Subject.CommonName)
			return
		}
	}
}

func keptOrNone(existing []byte) string {
	if len(bytes.TrimSpace(existing)) > 0 {
		return "the previous " + pki.CRLKey + " stays as it is"
	}
	return "cacerts carries no " + pki.CRLKey + " until then"
}

func pendingPeers(s *crlexchange.Status) []string {
	if s == nil {
		return nil
	}
	return s.PendingPeers()
}

// own gathers this cluster's own intermediates with a CRL of each: the
// source's, the one cacerts holds, and any still unexpired one published
// before (workload certificates it signed are around until they expire). A
// CRL already made is reused; one missing is signed with the key at hand.
func (p *crlPlan) ownCRLs(in crlInput, installed *pki.Bundle, existing []*x509.RevocationList) ([]*x509.Certificate, []*x509.RevocationList) {
	type candidate struct {
		cert *x509.Certificate
		key  crypto.Signer
	}
	cands := []candidate{{in.bundle.Cert, in.bundle.Key.Signer}}
	if installed != nil {
		cands = append(cands, candidate{installed.Cert, installed.Key.Signer})
	}
	known := slices.Clone(existing)
	if in.exchange != nil {
		certs, crls, err := pki.DecodeCRLEntry([]byte(in.exchange.Data[in.ownKey]), pki.MaxCRLPEMSize)
		if err == nil {
			for _, c := range certs {
				cands = append(cands, candidate{cert: c})
			}
			known = append(known, crls...)
		}
	}
	pool := x509.NewCertPool()
	for _, r := range in.bundle.Roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range in.bundle.Intermediates {
		inter.AddCert(c)
	}
	var certs []*x509.Certificate
	var crls []*x509.RevocationList
	for _, cand := range cands {
		c := cand.cert
		if slices.ContainsFunc(certs, c.Equal) || !in.now.Before(c.NotAfter) || !slices.Equal(c.PermittedURIDomains, in.bundle.Cert.PermittedURIDomains) {
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: in.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			continue // under a root this cluster no longer trusts
		}
		var best *x509.RevocationList
		for _, crl := range known {
			if pki.CheckCRL(crl, c, in.now, pki.CRLKey) == nil && (best == nil || pki.Newer(crl, best)) {
				best = crl
			}
		}
		if best == nil && cand.key != nil && in.sign != nil {
			var err error
			if best, err = in.sign(c, cand.key, in.now); err != nil {
				p.warn(decision.ReasonInvalidCRL, "cannot sign a CRL for intermediate serial %x: %v", c.SerialNumber, err)
				continue
			}
		}
		if best == nil {
			continue
		}
		certs, crls = append(certs, c), append(crls, best)
	}
	return certs, crls
}

// installedBundle is the bundle cacerts holds, when it reads as one.
func installedBundle(existing *corev1.Secret) *pki.Bundle {
	if existing == nil {
		return nil
	}
	b, err := pki.ParseIstio(existing.Data)
	if err != nil {
		return nil
	}
	return b
}

// checkVaultCRLs keeps, of Vault's CRLs, the newest valid one of each CA
// this cluster trusts. A CRL of another CA is left out (a root Vault added
// that this cluster's Certificate does not carry yet, or a foreign one);
// anything broken, expired or older than what cacerts carries is fatal.
func checkVaultCRLs(text string, trusted []*x509.Certificate, existing []*x509.RevocationList, now time.Time, field string) ([]*x509.RevocationList, []problem) {
	crls, err := pki.DecodeCRLs([]byte(text), pki.MaxCRLPEMSize)
	if err != nil {
		return nil, []problem{{fmt.Errorf("%s: %w", field, err), true}}
	}
	return keepCarried(crls, trusted, nil, existing, now, field)
}

// checkPeerCRLs keeps, of the other clusters' entries, the newest valid CRL
// of each intermediate that chains to a root this cluster trusts; other
// intermediates (under a root not trusted here) are left out.
func checkPeerCRLs(text string, roots []*x509.Certificate, existing []*x509.RevocationList, now time.Time, field string) ([]*x509.RevocationList, []problem) {
	certs, crls, err := pki.DecodeCRLEntry([]byte(text), pki.MaxCRLPEMSize)
	if err != nil {
		return nil, []problem{{fmt.Errorf("%s: %w", field, err), true}}
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	var peers []*x509.Certificate
	for _, c := range certs {
		if !c.IsCA || pki.IsSelfSigned(c) || !now.Before(c.NotAfter) {
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			peers = append(peers, c)
		}
	}
	return keepCarried(crls, peers, certs, existing, now, field)
}

// keepCarried keeps the newest valid CRL of each CA of cas. A CRL of none
// of them is left out, as a problem unless one of quiet issued it (an
// intermediate of an entry under a root this cluster does not trust:
// nothing of it would verify here anyway); a CRL of one of them that fails
// checkCarried is a fatal problem.
func keepCarried(crls []*x509.RevocationList, cas, quiet []*x509.Certificate, existing []*x509.RevocationList, now time.Time, field string) ([]*x509.RevocationList, []problem) {
	var problems []problem
	var out []*x509.RevocationList
	for _, crl := range crls {
		ca := pki.CRLIssuer(crl, cas)
		if ca == nil {
			if pki.CRLIssuer(crl, quiet) == nil {
				problems = append(problems, problem{pki.CheckCRL(crl, nil, now, field), false})
			}
			continue
		}
		if pr := checkCarried(crl, ca, existing, now, field); pr != nil {
			problems = append(problems, *pr)
			continue
		}
		out = keepNewest(out, crl, ca)
	}
	return out, problems
}

// checkCarried checks crl, issued by ca, for ca-crl.pem: valid now, and not
// older than the CRL of ca that cacerts carries already. A CRL number going
// backwards is a replay of an older CRL, which could take a revocation
// back.
func checkCarried(crl *x509.RevocationList, ca *x509.Certificate, existing []*x509.RevocationList, now time.Time, field string) *problem {
	if err := pki.CheckCRL(crl, ca, now, field); err != nil {
		return &problem{err, true}
	}
	for _, old := range existing {
		if pki.CRLIssuedBy(old, ca) && pki.Newer(old, crl) {
			err := &pki.Error{Check: pki.CheckCRLNumber, Field: field, Value: fmt.Sprintf("CRL of %q number %v", crl.Issuer.String(), crl.Number),
				Err: fmt.Errorf("older than the CRL number %v %s already carries", old.Number, pki.CRLKey)}
			return &problem{err, true}
		}
	}
	return nil
}

// keepNewest adds crl, issued by ca, unless out has a newer CRL of ca, which
// it otherwise replaces.
func keepNewest(out []*x509.RevocationList, crl *x509.RevocationList, ca *x509.Certificate) []*x509.RevocationList {
	for i, c := range out {
		if pki.CRLIssuedBy(c, ca) {
			if pki.Newer(crl, c) {
				out[i] = crl
			}
			return out
		}
	}
	return append(out, crl)
}

// crlInputFor gathers the CRL part's input from the plan's.
func crlInputFor(in Input, s Settings, b *pki.Bundle) crlInput {
	ci := crlInput{now: in.Now, layout: s.Layout, bundle: b, exchange: in.Exchange, sign: in.SignCRL,
		ownKey: crlexchange.OwnKey(in.Certificate.Namespace, in.Certificate.Name),
		delay:  in.Options.CRLPropagationDelay, guard: in.Options.WorkloadCertTTL + in.Options.SafetyMargin}
	if in.Exchange != nil {
		ci.exchangeKey = types.NamespacedName{Namespace: in.Exchange.Namespace, Name: in.Exchange.Name}
	}
	ref := in.Certificate.Spec.IssuerRef
	ci.namespacedIssuer = ref.Group == crlexchange.Group && ref.Kind == crlexchange.KindIssuer
	if e := in.Existing; e != nil && e.Labels[decision.ManagedByLabel] == decision.ManagedByValue &&
		e.Annotations[decision.SourceAnnotation] == in.Certificate.Namespace+"/"+in.Certificate.Name {
		ci.existing = e
	}
	return ci
}

// holdForCRL keeps the installed intermediate while the new one's CRL
// propagates: cacerts changes only in ca-crl.pem, which already carries the
// new intermediate's CRL for this cluster's own proxies.
func (p *Plan) holdForCRL(in Input) {
	h := p.crl.hold
	p.Condition = &Condition{Status: cmmeta.ConditionFalse, Reason: decision.ReasonWaitingForCRL, Message: h.Message}
	if conditionChanged(in.Certificate, p.Condition) {
		p.Events = append(p.Events, Event{Type: corev1.EventTypeNormal, Reason: decision.ReasonWaitingForCRL, Message: h.Message})
	}
	p.Result = ResultPending
	if !h.Until.IsZero() {
		p.requeue(h.Until, in.Now)
	}
	existing := in.Existing
	if existing == nil || p.crl.pem == nil || bytes.Equal(existing.Data[pki.CRLKey], p.crl.pem) {
		return
	}
	data := maps.Clone(existing.Data)
	data[pki.CRLKey] = p.crl.pem
	ann := map[string]string{AnnotationContentChecksum: checksum(data)}
	if v, ok := existing.Annotations[AnnotationRootsChangedAt]; ok {
		ann[AnnotationRootsChangedAt] = v
	}
	p.Secret = secretFor(existing, p.Target, data, ann, in.Now)
	p.Result = ResultSynced
}
