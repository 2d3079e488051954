// Package status builds `meshtrust status`: per cluster, what its Istio
// cacerts Secret holds and whether it validates; across clusters, whether
// each intermediate chains to the roots every other cluster trusts.
//
// Build is pure: it takes what was read from the clusters and the current
// time, and uses internal/pki's Verify, the same validator the syncer runs
// before it writes cacerts.
package status

import (
	"crypto/x509"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrust/meshtrust/internal/meshconfig"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/rotation"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// Input is what was read from one cluster.
type Input struct {
	// Context is the kube context the cluster was read through.
	Context string
	// Secret is the cacerts Secret, nil when absent.
	Secret *corev1.Secret
	// Err is set when the cluster could not be read at all.
	Err error
	// Certificates are the cert-manager Certificates opted in to the syncer.
	Certificates []cmapi.Certificate
	// CertificatesErr is set when Certificates could not be listed.
	CertificatesErr error
	// Reviewers are the ServiceAccounts enrol minted the Vault reviewer
	// token for, with its expiry.
	Reviewers []corev1.ServiceAccount
	// ReviewersErr is set when they could not be listed.
	ReviewersErr error
	// MeshSource is "namespace/name" of Istio's mesh ConfigMap; empty when
	// not asked for.
	MeshSource string
	// Mesh is that ConfigMap, nil when absent.
	Mesh *corev1.ConfigMap
	// MeshErr is set when it could not be read.
	MeshErr error
}

// Options tunes the checks.
type Options struct {
	// ManagedBy decides whether the syncer owns a Secret, and returns the
	// source Certificate's "namespace/name" when it says so. Nil means
	// DefaultManagedBy.
	ManagedBy func(*corev1.Secret) (managed bool, source string)
	// ExpectedRoots are SHA-256 fingerprints (hex, any case, colons allowed)
	// of the roots every cluster should trust, e.g. the one bootstrap printed.
	// A cluster whose root bundle lacks all of them, or whose intermediate
	// chains to another root, is the one at fault when trust is not shared.
	// Empty means: the root set most clusters hold, if a strict majority
	// holds one.
	ExpectedRoots []string
	// VaultCRLs are Vault's current CRLs; a cluster that carries an older
	// one of a root it trusts gets a warning. Nil skips the comparison.
	VaultCRLs []IssuedCRL
}

// CertInfo describes the intermediate (signing) certificate.
type CertInfo struct {
	// Subject is the certificate's subject.
	Subject string `json:"subject"`
	// Serial is the colon-separated hex serial number.
	Serial string `json:"serial"`
	// NotAfter is the expiry.
	NotAfter time.Time `json:"notAfter"`
	// TimeLeft is NotAfter minus now, rounded, negative when expired.
	TimeLeft string `json:"timeLeft"`
	// PermittedURIDomains are the URI name constraints.
	PermittedURIDomains []string `json:"permittedURIDomains"`
	// MaxPathLen is the path length constraint; -1 when absent.
	MaxPathLen int `json:"maxPathLen"`
}

// Source is the cert-manager Certificate the cacerts came from.
type Source struct {
	// Namespace and Name identify the Certificate.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Ready is the Ready condition's status: True, False or Unknown.
	Ready string `json:"ready"`
	// Reason and Message come from the Ready condition.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Cluster is one cluster's status.
type Cluster struct {
	// Context is the kube context.
	Context string `json:"context"`
	// Reachable is false when the cluster could not be read.
	Reachable bool `json:"reachable"`
	// Present is true when cacerts exists.
	Present bool `json:"present"`
	// Managed is true when meshtrust's syncer owns cacerts.
	Managed bool `json:"managed"`
	// Layout is "istio", "tls" or "" when unknown.
	Layout string `json:"layout,omitempty"`
	// Intermediate describes the signing certificate, when it parses.
	Intermediate *CertInfo `json:"intermediate,omitempty"`
	// RootFingerprints are the SHA-256 fingerprints of root-cert.pem / ca.crt.
	RootFingerprints []string `json:"rootFingerprints"`
	// RootsError says why the root bundle could not be read, if it could not.
	RootsError string `json:"rootsError,omitempty"`
	// Valid is true when the bundle passes the istiod-equivalent Verify.
	Valid bool `json:"valid"`
	// ValidationError says why not.
	ValidationError string `json:"validationError,omitempty"`
	// Source is the Certificate cacerts came from, when found.
	Source *Source `json:"source,omitempty"`
	// CRL describes ca-crl.pem (Istio layout only).
	CRL *CRLInfo `json:"crl,omitempty"`
	// Rotation is the root-rotation phase rotate-root last verified on the
	// cluster (its record on the source Certificate), nil when none ran.
	Rotation *rotation.Record `json:"rotation,omitempty"`
	// ReviewerTokens are the Vault reviewer tokens minted in this cluster
	// and stored in Vault's kubernetes auth mounts.
	ReviewerTokens []ReviewerToken `json:"reviewerTokens,omitempty"`
	// ReviewersError says why they could not be read.
	ReviewersError string `json:"reviewersError,omitempty"`
	// Mesh is what Istio's mesh configuration says about trust domains;
	// nil when it was not read.
	Mesh *MeshInfo `json:"mesh,omitempty"`
	// MeshNote says why Istio's mesh configuration was not checked.
	MeshNote string `json:"meshNote,omitempty"`
	// Problems make the cluster unhealthy.
	Problems []string `json:"problems,omitempty"`

	bundle *pki.Bundle
	roots  []*x509.Certificate
	chain  []*x509.Certificate
	cert   *x509.Certificate
	renew  time.Duration
}

// MeshInfo is Istio's mesh configuration, as far as trust domains go.
type MeshInfo struct {
	// ConfigMap is "namespace/name".
	ConfigMap string `json:"configMap"`
	meshconfig.TrustDomains
}

// ReviewerToken is a token_reviewer_jwt a Vault kubernetes auth mount
// stores for the cluster: when it lapses, every login fails.
type ReviewerToken struct {
	// Mount is the Vault auth mount, without "auth/".
	Mount string `json:"mount"`
	// ServiceAccount is "namespace/name" of the token's ServiceAccount.
	ServiceAccount string `json:"serviceAccount"`
	// Expires is the token's expiry; zero when the record does not parse.
	Expires time.Time `json:"expires"`
	// TimeLeft is Expires minus now, rounded.
	TimeLeft string `json:"timeLeft"`
}

// Matrix says whose intermediate chains to whose roots.
type Matrix struct {
	// Contexts names the rows and columns.
	Contexts []string `json:"contexts"`
	// Trusts[i][j] is true when cluster i's intermediate chains to a root in
	// cluster j's root bundle, so that j's workloads accept i's.
	Trusts [][]bool `json:"trusts"`
}

// AllYes is true when every cluster trusts every other.
func (m Matrix) AllYes() bool {
	for _, row := range m.Trusts {
		for _, ok := range row {
			if !ok {
				return false
			}
		}
	}
	return len(m.Trusts) > 0
}

// Report is the whole status.
type Report struct {
	// Time is when the status was taken.
	Time time.Time `json:"time"`
	// Clusters are in the order of the contexts given.
	Clusters []Cluster `json:"clusters"`
	// Matrix is the cross-cluster trust matrix.
	Matrix Matrix `json:"trustMatrix"`
	// Warnings are cross-cluster and lifetime concerns.
	Warnings []string `json:"warnings"`
	// Healthy is true when there are no problems and no warnings.
	Healthy bool `json:"healthy"`
}

// Unhealthy lists the contexts of clusters with problems.
func (r Report) Unhealthy() []string {
	var out []string
	for _, c := range r.Clusters {
		if len(c.Problems) > 0 {
			out = append(out, c.Context)
		}
	}
	return out
}

// Build computes the report from what was read. now is the current time.
func Build(inputs []Input, now time.Time, o Options) Report {
	if o.ManagedBy == nil {
		o.ManagedBy = DefaultManagedBy
	}
	r := Report{Time: now.UTC(), Warnings: []string{}}
	var crlWarnings []string
	for _, in := range inputs {
		c := buildCluster(in, now, o)
		if in.Secret != nil && c.Layout != "" {
			var w []string
			w, c.CRL = describeCRL(&c, in.Secret, now, o.VaultCRLs)
			crlWarnings = append(crlWarnings, w...)
		}
		r.Clusters = append(r.Clusters, c)
	}
	r.Matrix = buildMatrix(r.Clusters, now)
	expected := normalizeFingerprints(o.ExpectedRoots)
	if len(expected) == 0 {
		expected = majorityRoots(r.Clusters)
	}
	blamed := checkExpectedRoots(r.Clusters, expected)
	for i := range r.Clusters {
		c := &r.Clusters[i]
		for j, ok := range r.Matrix.Trusts[i] {
			if ok || c.bundle == nil || r.Clusters[j].roots == nil {
				continue
			}
			if blamed[i] || blamed[j] {
				// The cluster holding the unexpected root already says so;
				// naming its peers too would hide which one is wrong.
				continue
			}
			c.Problems = append(c.Problems, fmt.Sprintf("intermediate does not chain to any root of %s", r.Clusters[j].Context))
		}
	}
	checkTrustDomainOverlaps(r.Clusters)
	r.Warnings = append(r.Warnings, warnings(r.Clusters, now)...)
	r.Warnings = append(r.Warnings, crlWarnings...)
	r.Warnings = append(r.Warnings, aliasWarnings(r.Clusters, r.Matrix)...)
	r.Healthy = len(r.Unhealthy()) == 0 && len(r.Warnings) == 0 && len(r.Clusters) > 0
	return r
}

// DefaultManagedBy reads the syncer's marks: its managed-by label, and the
// annotation naming the source Certificate as "<namespace>/<name>".
func DefaultManagedBy(s *corev1.Secret) (bool, string) {
	managed := s.Labels[decision.ManagedByLabel] == decision.ManagedByValue
	if !managed {
		return false, ""
	}
	return true, s.Annotations[decision.SourceAnnotation]
}

func buildCluster(in Input, now time.Time, o Options) Cluster {
	c := readCluster(in, now, o)
	c.meshConfig(in)
	return c
}

// readCluster reads the cluster's cacerts, its source and its reviewer
// tokens.
func readCluster(in Input, now time.Time, o Options) Cluster {
	c := Cluster{Context: in.Context, RootFingerprints: []string{}}
	if in.Err != nil {
		c.Problems = append(c.Problems, "cannot read cluster: "+in.Err.Error())
		return c
	}
	c.Reachable = true
	s := in.Secret
	var sourceRef string
	if s != nil {
		c.Present = true
		c.Managed, sourceRef = o.ManagedBy(s)
	}
	c.Source = findSource(in, sourceRef)
	var rotationErr string
	if c.Rotation, rotationErr = rotationOf(in, c.Source); rotationErr != "" {
		c.Problems = append(c.Problems, rotationErr)
	}
	if c.Source == nil && sourceRef != "" {
		c.Problems = append(c.Problems, fmt.Sprintf("source Certificate %s, named by cacerts, is not there (or not opted in)", sourceRef))
	}
	if in.CertificatesErr != nil {
		c.Problems = append(c.Problems, "cannot list Certificates: "+in.CertificatesErr.Error())
	}
	c.reviewerTokens(in, now)
	if c.Source != nil {
		if c.Source.Ready != "True" {
			why := strings.Trim(c.Source.Reason+": "+c.Source.Message, ": ")
			if why == "" {
				why = "no Ready condition"
			}
			c.Problems = append(c.Problems, fmt.Sprintf("source Certificate %s/%s is not Ready (%s)", c.Source.Namespace, c.Source.Name, why))
		}
		if cert := sourceCertificate(in, c.Source); cert != nil && cert.Spec.RenewBefore != nil {
			c.renew = cert.Spec.RenewBefore.Duration
		}
	}
	if s == nil {
		c.Problems = append(c.Problems, "cacerts Secret is missing")
		return c
	}
	layout, certKey, rootKey := detectLayout(s.Data)
	if layout == "" {
		c.Problems = append(c.Problems, "cacerts holds neither ca-cert.pem nor tls.crt")
		return c
	}
	c.Layout = string(layout)
	// Read the parts on their own first, so that a broken key or chain still
	// shows the intermediate and the roots.
	if certs, err := pki.DecodeCertificates(s.Data[certKey], pki.MaxChainPEMSize); err == nil {
		c.cert = certs[0]
		c.chain = certs
		c.Intermediate = describe(certs[0], now)
	}
	if roots, err := pki.DecodeCertificates(s.Data[rootKey], pki.MaxRootBundlePEMSize); err == nil {
		c.roots = roots
		c.RootFingerprints = pki.Fingerprints(roots)
	} else {
		c.RootsError = fmt.Sprintf("%s: %v", rootKey, err)
	}
	b, err := pki.Parse(layout, s.Data)
	if err == nil {
		err = pki.Verify(b, now, 0)
	}
	if err != nil {
		c.ValidationError = err.Error()
		c.Problems = append(c.Problems, "cacerts does not validate: "+err.Error())
		return c
	}
	c.bundle = b
	c.Valid = true
	return c
}

// meshConfig reads Istio's mesh configuration and checks its trust domain
// against the intermediate's URI name constraint.
func (c *Cluster) meshConfig(in Input) {
	switch {
	case in.MeshSource == "":
		return
	case in.MeshErr != nil:
		c.MeshNote = "not checked: " + in.MeshErr.Error()
		return
	case in.Mesh == nil:
		c.MeshNote = fmt.Sprintf("not checked: no ConfigMap %s (Istio not installed, or a revisioned install: pass --mesh-configmap)", in.MeshSource)
		return
	}
	td, err := meshconfig.FromConfigMap(in.Mesh)
	if err != nil {
		c.Problems = append(c.Problems, "cannot read Istio's mesh configuration: "+err.Error())
		return
	}
	c.Mesh = &MeshInfo{ConfigMap: in.MeshSource, TrustDomains: td}
	if c.cert != nil && len(c.cert.PermittedURIDomains) == 1 {
		if why := td.Mismatch(c.cert.PermittedURIDomains[0], "ConfigMap "+in.MeshSource); why != "" {
			c.Problems = append(c.Problems, why)
		}
	}
}

// reviewerTokens reads the stored reviewer tokens' expiries; an expired
// one is a problem (warnings flags one close to it).
func (c *Cluster) reviewerTokens(in Input, now time.Time) {
	if in.ReviewersErr != nil {
		c.ReviewersError = in.ReviewersErr.Error()
	}
	for _, sa := range in.Reviewers {
		rt := ReviewerToken{Mount: sa.Annotations[vaultcontract.ReviewerTokenMountAnnotation], ServiceAccount: sa.Namespace + "/" + sa.Name}
		raw := sa.Annotations[vaultcontract.ReviewerTokenExpiresAnnotation]
		t, err := time.Parse(time.RFC3339, raw)
		switch {
		case err != nil:
			c.Problems = append(c.Problems, fmt.Sprintf("ServiceAccount %s: annotation %s=%q is not an RFC 3339 time, so the expiry of the reviewer token of auth/%s is unknown",
				rt.ServiceAccount, vaultcontract.ReviewerTokenExpiresAnnotation, raw, rt.Mount))
		case !now.Before(t):
			rt.Expires, rt.TimeLeft = t.UTC(), FormatDuration(t.Sub(now))
			c.Problems = append(c.Problems, fmt.Sprintf("the Vault reviewer token stored in auth/%s (ServiceAccount %s) expired at %s: every login of this cluster fails; rerun meshtrust vault enroll",
				rt.Mount, rt.ServiceAccount, t.UTC().Format(time.RFC3339)))
		default:
			rt.Expires, rt.TimeLeft = t.UTC(), FormatDuration(t.Sub(now))
		}
		c.ReviewerTokens = append(c.ReviewerTokens, rt)
	}
}

func detectLayout(data map[string][]byte) (pki.Layout, string, string) {
	switch {
	case data[pki.CACertKey] != nil || data[pki.RootCertKey] != nil:
		return pki.LayoutIstio, pki.CACertKey, pki.RootCertKey
	case data[pki.TLSCertKey] != nil:
		return pki.LayoutTLS, pki.TLSCertKey, pki.CACertBundleKey
	}
	return "", "", ""
}

func describe(c *x509.Certificate, now time.Time) *CertInfo {
	mpl := -1
	if c.MaxPathLen > 0 || c.MaxPathLenZero {
		mpl = c.MaxPathLen
	}
	return &CertInfo{
		Subject:             c.Subject.String(),
		Serial:              pki.FormatSerial(c.SerialNumber),
		NotAfter:            c.NotAfter.UTC(),
		TimeLeft:            FormatDuration(c.NotAfter.Sub(now)),
		PermittedURIDomains: append([]string{}, c.PermittedURIDomains...),
		MaxPathLen:          mpl,
	}
}

// FormatDuration renders d as days and hours ("29d23h"), or hours and
// minutes under a day; negative durations get a leading "-".
func FormatDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	d = d.Truncate(time.Minute)
	days := d / (24 * time.Hour)
	hours := (d % (24 * time.Hour)) / time.Hour
	mins := (d % time.Hour) / time.Minute
	if days > 0 {
		return fmt.Sprintf("%s%dd%dh", sign, days, hours)
	}
	return fmt.Sprintf("%s%dh%dm", sign, hours, mins)
}

func findSource(in Input, ref string) *Source {
	var pick *cmapi.Certificate
	certs := slices.Clone(in.Certificates)
	sort.Slice(certs, func(i, j int) bool {
		return certs[i].Namespace+"/"+certs[i].Name < certs[j].Namespace+"/"+certs[j].Name
	})
	for i := range certs {
		if ref == "" || certs[i].Namespace+"/"+certs[i].Name == ref {
			pick = &certs[i]
			break
		}
	}
	if pick == nil {
		return nil
	}
	src := &Source{Namespace: pick.Namespace, Name: pick.Name, Ready: "Unknown"}
	for _, cond := range pick.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionReady {
			src.Ready, src.Reason, src.Message = string(cond.Status), cond.Reason, cond.Message
		}
	}
	return src
}

func sourceCertificate(in Input, s *Source) *cmapi.Certificate {
	for i := range in.Certificates {
		if in.Certificates[i].Namespace == s.Namespace && in.Certificates[i].Name == s.Name {
			return &in.Certificates[i]
		}
	}
	return nil
}

// buildMatrix runs the shared Verify once per pair: cluster i's bundle with
// cluster j's roots as anchors.
func buildMatrix(cs []Cluster, now time.Time) Matrix {
	m := Matrix{Contexts: make([]string, len(cs)), Trusts: make([][]bool, len(cs))}
	for i, ci := range cs {
		m.Contexts[i] = ci.Context
		m.Trusts[i] = make([]bool, len(cs))
		for j, cj := range cs {
			if ci.bundle == nil || len(cj.roots) == 0 {
				continue
			}
			b := *ci.bundle
			b.Roots, b.RootsPEM = cj.roots, nil
			m.Trusts[i][j] = pki.Verify(&b, now, 0) == nil
		}
	}
	return m
}

func warnings(cs []Cluster, now time.Time) []string {
	var w []string
	var first *Cluster
	for i := range cs {
		c := &cs[i]
		if len(c.roots) == 0 {
			continue
		}
		if first == nil {
			first = c
		} else if !sameSet(first.RootFingerprints, c.RootFingerprints) {
			w = append(w, fmt.Sprintf("roots differ: %s trusts %s, %s trusts %s", first.Context, short(first.RootFingerprints), c.Context, short(c.RootFingerprints)))
		}
	}
	for i := range cs {
		c := &cs[i]
		if c.cert == nil {
			continue
		}
		if len(c.cert.PermittedURIDomains) == 0 {
			w = append(w, fmt.Sprintf("%s: intermediate has no URI name constraint, so it can sign identities of any trust domain", c.Context))
		}
		window := c.renew
		if window == 0 {
			// cert-manager's default: renew at two thirds of the lifetime.
			window = c.cert.NotAfter.Sub(c.cert.NotBefore) / 3
		}
		if left := c.cert.NotAfter.Sub(now); left > 0 && left <= window {
			w = append(w, fmt.Sprintf("%s: intermediate is inside its renewal window: expires in %s, renewal due %s before expiry", c.Context, FormatDuration(left), FormatDuration(window)))
		}
	}
	for i := range cs {
		for _, rt := range cs[i].ReviewerTokens {
			if left := rt.Expires.Sub(now); left > 0 && left <= vaultcontract.ReviewerTokenRenewBefore {
				w = append(w, fmt.Sprintf("%s: the Vault reviewer token stored in auth/%s (ServiceAccount %s) expires in %s, at %s: rerun meshtrust vault enroll for the cluster to renew it",
					cs[i].Context, rt.Mount, rt.ServiceAccount, FormatDuration(left), rt.Expires.Format(time.RFC3339)))
			}
		}
	}
	return w
}

// aliasWarnings flags, for each cluster with a mesh configuration, the
// trust domains of its federated peers (clusters that trust it and that it
// trusts) missing from its meshConfig.trustDomainAliases.
func aliasWarnings(cs []Cluster, m Matrix) []string {
	var w []string
	for i := range cs {
		c := &cs[i]
		if c.Mesh == nil {
			continue
		}
		var peers []string
		byTD := map[string]string{}
		for j := range cs {
			p := &cs[j]
			if i == j || p.cert == nil || len(p.cert.PermittedURIDomains) != 1 || !m.Trusts[i][j] || !m.Trusts[j][i] {
				continue
			}
			td := p.cert.PermittedURIDomains[0]
			peers = append(peers, td)
			if byTD[td] == "" {
				byTD[td] = p.Context
			}
		}
		for _, td := range c.Mesh.MissingAliases(peers) {
			w = append(w, fmt.Sprintf("%s: trust domain %s of federated peer %s is not in Istio's meshConfig.trustDomainAliases (%s: %s), so Istio does not treat that peer's identities as this mesh's: authorization policies and secure naming for its services will not match them",
				c.Context, td, byTD[td], c.Mesh.ConfigMap, c.Mesh.AliasesString()))
		}
	}
	return w
}

// checkTrustDomainOverlaps adds a problem to both clusters of every pair
// whose intermediates' trust domains are equal or one falls under the
// other (vaultcontract.Overlap, crypto/x509's rule): one of them can then
// sign workload identities of the other's trust domain.
func checkTrustDomainOverlaps(cs []Cluster) {
	for i := range cs {
		for j := i + 1; j < len(cs); j++ {
			a, b := &cs[i], &cs[j]
			if a.cert == nil || b.cert == nil {
				continue
			}
			if a.cert.Equal(b.cert) {
				a.Problems = append(a.Problems, sameIntermediateProblem(b.Context))
				b.Problems = append(b.Problems, sameIntermediateProblem(a.Context))
				continue
			}
			for _, ta := range a.cert.PermittedURIDomains {
				for _, tb := range b.cert.PermittedURIDomains {
					if vaultcontract.Overlap(ta, tb) == "" {
						continue
					}
					a.Problems = append(a.Problems, overlapProblem(ta, tb, b.Context))
					b.Problems = append(b.Problems, overlapProblem(tb, ta, a.Context))
				}
			}
		}
	}
}

func sameIntermediateProblem(otherContext string) string {
	return fmt.Sprintf("holds the same intermediate as %s: one cluster read through two contexts, or one CA key in two clusters, whose workload identities are then not isolated", otherContext)
}

func overlapProblem(td, other, otherContext string) string {
	return fmt.Sprintf("trust domain %s %s trust domain %s of %s: the intermediates' name constraints overlap, so the clusters' workload identities are not isolated",
		td, vaultcontract.Overlap(td, other), other, otherContext)
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func short(fps []string) string {
	out := make([]string, len(fps))
	for i, f := range fps {
		if len(f) > 16 {
			f = f[:16]
		}
		out[i] = f
	}
	return "[" + strings.Join(out, " ") + "]"
}

// normalizeFingerprints lowercases and strips colons, so that fingerprints
// copied from openssl (AB:CD:...) match ours.
func normalizeFingerprints(fps []string) []string {
	out := make([]string, 0, len(fps))
	for _, f := range fps {
		if f = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(f), ":", "")); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// majorityRoots returns the root set a strict majority of the clusters with
// roots hold, or nil when none does (for example one cluster against one).
func majorityRoots(cs []Cluster) []string {
	counts := map[string]int{}
	sets := map[string][]string{}
	total := 0
	for _, c := range cs {
		if len(c.RootFingerprints) == 0 {
			continue
		}
		k := slices.Clone(c.RootFingerprints)
		slices.Sort(k)
		key := strings.Join(k, ",")
		counts[key]++
		sets[key] = k
		total++
	}
	for key, n := range counts {
		if 2*n > total && n < total {
			return sets[key]
		}
	}
	return nil
}

// checkExpectedRoots adds a problem to each cluster that does not hold or
// chain to an expected root, and reports which ones it blamed.
func checkExpectedRoots(cs []Cluster, expected []string) []bool {
	blamed := make([]bool, len(cs))
	if len(expected) == 0 {
		return blamed
	}
	for i := range cs {
		c := &cs[i]
		if len(c.roots) > 0 && !slices.ContainsFunc(c.RootFingerprints, func(f string) bool { return slices.Contains(expected, f) }) {
			c.Problems = append(c.Problems, fmt.Sprintf("root bundle %s holds none of the expected roots %s", short(c.RootFingerprints), short(expected)))
			blamed[i] = true
		}
		if c.bundle != nil {
			if root := c.bundle.ChainRoot(); root != nil && !slices.Contains(expected, pki.Fingerprint(root)) {
				c.Problems = append(c.Problems, fmt.Sprintf("intermediate chains to root %s, not to an expected root %s", short([]string{pki.Fingerprint(root)}), short(expected)))
				blamed[i] = true
			}
		}
	}
	return blamed
}
