package rotation

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/syncer"
)

const (
	root1Ref = "meshtrust-root"   // what `meshtrust vault bootstrap` names the first root
	root2Ref = "meshtrust-root-2" // the root that replaces it
	// rootGrace is the meshtrust.io/root-grace of both Certificates: how
	// long root-1 stays in root-cert.pem once Vault no longer has it. In
	// production it must exceed the workload certificate lifetime (the
	// default is 720h); here it is short so the test sees it end.
	rootGrace = 45 * time.Second
	// perState is how many successful handshakes each intermediate state
	// of the rotation must carry before the next step starts.
	perState = 10
)

// TestRootRotation rotates the shared root of two clusters while workloads
// in kind2 and kind3 keep calling each other over mutual TLS:
//
//  1. baseline: both intermediates chain to root-1;
//  2. root-2 is added in Vault and both intermediates are renewed: both
//     root-cert.pem files trust root-1 and root-2;
//  3. kind2 moves to root-2 (new enrolment policy, issuerRef, renewal)
//     while kind3 stays on root-1;
//  4. kind3 moves to root-2;
//  5. root-1 is deleted from Vault and both are renewed: root-1 stays in
//     root-cert.pem for the grace period, then only root-2 is left.
//
// No handshake may fail at any point, and `meshtrust status` must be
// healthy at the end.
func TestRootRotation(t *testing.T) {
	e := newEnv(t, "kind2", "kind3")
	clusters := []string{"kind2", "kind3"}

	// ---- Phase 1: baseline on root-1.
	e.logf("phase 1: baseline, both clusters on root-1")
	e.mustCLI("vault", "bootstrap")
	r1 := e.registerRoot(root1Ref, "root-1")
	for _, n := range clusters {
		e.enrol(n, root1Ref)
		// Set before the first issuance, so every cacerts the syncer
		// writes in this test is under the short grace.
		e.annotateCertificate(n, syncer.AnnotationRootGrace, rootGrace.String())
		e.startControllers(n)
	}
	base := map[string]*clusterState{}
	for _, n := range clusters {
		base[n] = e.waitState(n, func(s *clusterState) error {
			return expectState(e, s, "root-1", []string{"root-1"})
		})
		e.logf("  %s", e.describe(base[n]))
	}
	// Workload certificates issued now, under root-1, that their
	// workloads keep using through the rotation, as a sidecar keeps its
	// certificate until it is due for renewal.
	stale := map[string]tls.Certificate{}
	for _, n := range clusters {
		cert, err := workload.Issue(base[n].CA, workloadOf(n), time.Now(), mesh.WorkloadTTL)
		if err != nil {
			t.Fatal(err)
		}
		stale[n] = cert
	}
	tr := e.startTraffic()
	e.waitTraffic(tr, "with both clusters on root-1", perState, func(k stateKey) bool {
		return k == stateKey{Chain2: "root-1", Chain3: "root-1", Trust2: "root-1", Trust3: "root-1"}
	})
	e.status("--expect-root", pki.Fingerprint(r1))
	e.logf("  meshtrust status: healthy")

	// ---- Phase 2: root-2 joins Vault; both clusters learn to trust it.
	e.logf("phase 2: add root-2 in Vault, renew both intermediates so that every root-cert.pem trusts both roots")
	e.mustCLI("vault", "bootstrap", "--issuer-name", root2Ref, "--common-name", "meshtrust root CA 2", "--set-default=false")
	r2 := e.registerRoot(root2Ref, "root-2")
	if got, want := e.vaultIssuers(), []string{root1Ref, root2Ref}; !slices.Equal(got, want) {
		t.Fatalf("Vault issuers are %v, want %v", got, want)
	}
	for _, n := range clusters {
		prev := e.mustState(n)
		s := e.renew(n, func(src *sourceBundle) error {
			return expectSource(e, src, r1, "root-1", "root-2")
		})
		if err := expectState(e, s, "root-1", []string{"root-1", "root-2"}); err != nil {
			t.Fatalf("phase 2, %s: %v", n, err)
		}
		if !bytes.HasPrefix(s.BundlePEM, prev.BundlePEM) {
			t.Errorf("phase 2, %s: root-cert.pem does not start with the previous root-cert.pem byte for byte", n)
		}
	}
	e.waitTraffic(tr, "with both on root-1, both trusting root-1 and root-2", perState, func(k stateKey) bool {
		return k.Chain2 == "root-1" && k.Chain3 == "root-1" && k.Trust2 == "root-1+root-2" && k.Trust3 == "root-1+root-2"
	})
	e.expectStaleAccepted(stale, "phase 2")
	e.status("--expect-root", pki.Fingerprint(r1), "--expect-root", pki.Fingerprint(r2))
	e.logf("  meshtrust status: healthy, both roots expected everywhere")

	// ---- Phases 3 and 4: one cluster at a time moves to root-2.
	for i, n := range clusters {
		other := clusters[1-i]
		e.logf("phase %d: move %s to root-2 while %s stays on %s", 3+i, n, other, e.name(e.mustState(other).ChainRoot))
		// Not yet: root-1 is still the default, and every cluster not yet
		// moved still has a policy to sign under it.
		var moved, waiting []string
		for _, c := range clusters[:i] {
			moved = append(moved, "meshtrust-"+c)
		}
		for _, c := range clusters[i:] {
			waiting = append(waiting, "meshtrust-"+c)
		}
		e.expectRetireRefused(append([]string{"default issuer", "meshtrust vault bootstrap --issuer-name " + root2Ref}, waiting...), moved)
		e.switchIssuer(n, root2Ref, root1Ref)
		s := e.renew(n, func(src *sourceBundle) error {
			return expectSource(e, src, r2, "root-2", "root-1")
		})
		if err := expectState(e, s, "root-2", nil); err != nil {
			t.Fatalf("phase %d, %s: %v", 3+i, n, err)
		}
		if got := sortedNames(e, s.Bundle); !slices.Equal(got, []string{"root-1", "root-2"}) {
			t.Fatalf("phase %d, %s: root-cert.pem holds %v, want root-1 and root-2", 3+i, n, got)
		}
		// kind3 waits on root-1 while kind2 moves; kind2 is already on
		// root-2 when kind3 moves.
		want := map[string]string{n: "root-2", other: "root-1"}
		if i == 1 {
			want[other] = "root-2"
		}
		if err := expectState(e, e.mustState(other), want[other], nil); err != nil {
			t.Fatalf("phase %d, %s: %v", 3+i, other, err)
		}
		e.waitTraffic(tr, fmt.Sprintf("with kind2 signed by %s and kind3 signed by %s", want["kind2"], want["kind3"]), perState,
			func(k stateKey) bool { return k.Chain2 == want["kind2"] && k.Chain3 == want["kind3"] })
		e.expectStaleAccepted(stale, fmt.Sprintf("phase %d", 3+i))
		e.status("--expect-root", pki.Fingerprint(r1), "--expect-root", pki.Fingerprint(r2))
		e.logf("  meshtrust status: healthy")
	}

	// ---- Phase 5: retire root-1.
	e.logf("phase 5: retire root-1: root-2 becomes Vault's default issuer, root-1 is deleted from Vault")
	// Every cluster has moved; only root-1 being the default is in the way.
	e.expectRetireRefused([]string{"default issuer"}, []string{"ACL polic"})
	e.mustCLI("vault", "bootstrap", "--issuer-name", root2Ref)
	if got, want := e.vaultDefaultIssuer(), e.vaultIssuerID(root2Ref); got != want {
		t.Fatalf("Vault's default issuer is %q, want root-2 (%s)", got, want)
	}
	if out := e.mustCLI("vault", "retire-root", "--issuer-name", root1Ref); !strings.Contains(out, "Retired:") {
		t.Fatalf("meshtrust vault retire-root --issuer-name %s did not say it retired the root:\n%s", root1Ref, out)
	}
	if got, want := e.vaultIssuers(), []string{root2Ref}; !slices.Equal(got, want) {
		t.Fatalf("Vault issuers are %v, want %v", got, want)
	}
	if out := e.mustCLI("vault", "retire-root", "--issuer-name", root1Ref); !strings.Contains(out, "Nothing changed") {
		t.Fatalf("a second meshtrust vault retire-root --issuer-name %s should change nothing:\n%s", root1Ref, out)
	}
	e.logf("  meshtrust vault retire-root --issuer-name %s: root-1 deleted from Vault; a second run changed nothing", root1Ref)
	for _, n := range clusters {
		prev := e.mustState(n)
		s := e.renew(n, func(src *sourceBundle) error {
			return expectSource(e, src, r2, "root-2")
		})
		// The syncer keeps the previous file verbatim at the start for the
		// grace period: workloads whose certificates still chain to root-1
		// keep being trusted.
		if err := expectState(e, s, "root-2", nil); err != nil {
			t.Fatalf("phase 5, %s: %v", n, err)
		}
		if !bytes.HasPrefix(s.BundlePEM, prev.BundlePEM) {
			t.Errorf("phase 5, %s: root-cert.pem %v does not keep the previous file %v verbatim at its start",
				n, e.names(s.Bundle), e.names(prev.Bundle))
		}
		if got := s.Annotations[syncer.AnnotationSourceRootFPs]; got != pki.Fingerprint(r2) {
			t.Errorf("phase 5, %s: annotation %s = %q, want root-2's fingerprint only", n, syncer.AnnotationSourceRootFPs, got)
		}
		if s.Annotations[syncer.AnnotationRootsChangedAt] == "" {
			t.Errorf("phase 5, %s: annotation %s is missing during the grace period", n, syncer.AnnotationRootsChangedAt)
		}
		e.logf("  %s: root-1 kept for the grace period (roots changed at %s, grace %s)", n, s.Annotations[syncer.AnnotationRootsChangedAt], rootGrace)
	}
	e.expectStaleAccepted(stale, "phase 5, inside the grace period")
	e.waitTraffic(tr, "with both on root-2, root-1 still trusted for the grace period", perState, func(k stateKey) bool {
		return k.Chain2 == "root-2" && k.Chain3 == "root-2" && strings.Contains(k.Trust2, "root-1") && strings.Contains(k.Trust3, "root-1")
	})

	e.logf("phase 5: waiting for the grace period (%s) to end; the syncer then drops root-1 on its own", rootGrace)
	for _, n := range clusters {
		s := e.waitState(n, func(s *clusterState) error {
			return expectState(e, s, "root-2", []string{"root-2"})
		})
		if _, ok := s.Annotations[syncer.AnnotationRootsChangedAt]; ok {
			t.Errorf("%s: annotation %s still set after the grace period", n, syncer.AnnotationRootsChangedAt)
		}
		e.logf("  %s", e.describe(s))
	}
	e.waitTraffic(tr, "with both on root-2 only", perState, func(k stateKey) bool {
		return k == stateKey{Chain2: "root-2", Chain3: "root-2", Trust2: "root-2", Trust3: "root-2"}
	})
	e.expectStaleRejected(stale)

	// ---- Verdict.
	tr.stop()
	e.logf("traffic over the whole rotation: %d handshakes succeeded, %d failed", tr.ok, tr.failed)
	for _, k := range tr.order {
		e.logf("  %5d  %s", tr.byState[k], k)
	}
	if tr.failed > 0 {
		t.Errorf("%d of %d handshakes failed; first failures:\n%s", tr.failed, tr.ok+tr.failed, strings.Join(tr.failures, "\n"))
	}
	e.checkIstiodWouldAccept(tr)

	rep := e.status("--expect-root", pki.Fingerprint(r2))
	for _, c := range rep.Clusters {
		if !slices.Equal(c.RootFingerprints, []string{pki.Fingerprint(r2)}) {
			t.Errorf("meshtrust status: %s trusts %v, want root-2 only", c.Context, c.RootFingerprints)
		}
	}
	table, _, _ := e.cli("status", "--kubeconfig", e.kubeconfig, "--context", "kind2", "--context", "kind3")
	e.logf("meshtrust status --context kind2 --context kind3:\n%s", table)
}

// switchIssuer moves a cluster's intermediates to another Vault issuer: it
// enrols the cluster again with --issuer-ref, which rewrites its Vault
// policy to that issuer's sign-intermediate path, and applies the YAML
// printed, which changes the VaultClusterIssuer's spec.pki.issuerRef.
func (e *env) switchIssuer(name, ref, oldRef string) {
	e.t.Helper()
	e.enrol(name, ref)
	var vci v1alpha1.VaultClusterIssuer
	if err := e.lab.Cluster(name).Client.Get(e.ctx, client.ObjectKey{Name: clusterIssuer}, &vci); err != nil {
		e.t.Fatal(err)
	}
	if vci.Spec.PKI.IssuerRef != ref {
		e.t.Fatalf("%s: VaultClusterIssuer spec.pki.issuerRef is %q after applying, want %q", name, vci.Spec.PKI.IssuerRef, ref)
	}
	policy, err := e.vault.Sys().GetPolicyWithContext(e.ctx, "meshtrust-"+name)
	if err != nil {
		e.t.Fatalf("reading Vault policy meshtrust-%s: %v", name, err)
	}
	newPath := fmt.Sprintf("%q", pkiMount+"/issuer/"+ref+"/sign-intermediate")
	oldPath := fmt.Sprintf("%q", pkiMount+"/issuer/"+oldRef+"/sign-intermediate")
	if !strings.Contains(policy, newPath) || strings.Contains(policy, oldPath) {
		e.t.Fatalf("%s: Vault policy should allow only %s, got:\n%s", name, newPath, policy)
	}
	e.logf("  %s: Vault policy now allows only %s; VaultClusterIssuer issuerRef=%s", name, newPath, ref)
}

// expectRetireRefused runs `meshtrust vault retire-root` for root-1 and
// checks that it refuses (exit 1, one line, nothing deleted) with a message
// containing every string of want and none of notWant.
func (e *env) expectRetireRefused(want, notWant []string) {
	e.t.Helper()
	out, errOut, code := e.cli("vault", "retire-root", "--issuer-name", root1Ref)
	msg := strings.TrimSpace(errOut)
	if code != 1 || strings.Contains(msg, "\n") {
		e.t.Fatalf("meshtrust vault retire-root --issuer-name %s: exit %d, want 1 and a one-line refusal:\n%s%s", root1Ref, code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			e.t.Fatalf("retire-root's refusal does not mention %q: %s", w, msg)
		}
	}
	for _, w := range notWant {
		if strings.Contains(msg, w) {
			e.t.Fatalf("retire-root's refusal mentions %q: %s", w, msg)
		}
	}
	if !slices.Contains(e.vaultIssuers(), root1Ref) {
		e.t.Fatalf("retire-root refused but Vault issuer %s is gone", root1Ref)
	}
	e.logf("  retire-root refused as it should: %s", msg)
}

// expectState checks which root signed the cluster's intermediate and,
// when trust is not nil, which roots root-cert.pem holds, in order. It
// also checks that cert-chain.pem's root is in root-cert.pem: istiod
// rejects a bundle whose chain does not verify with its own roots.
func expectState(e *env, s *clusterState, chainRoot string, trust []string) error {
	if got := e.name(s.ChainRoot); got != chainRoot {
		return fmt.Errorf("intermediate signed by %s, want %s", got, chainRoot)
	}
	if err := s.ChainRoot.CheckSignature(s.CA.Cert.SignatureAlgorithm, s.CA.Cert.RawTBSCertificate, s.CA.Cert.Signature); err != nil {
		return fmt.Errorf("intermediate not signed by the root at the end of cert-chain.pem: %w", err)
	}
	if trust != nil && !slices.Equal(e.names(s.Bundle), trust) {
		return fmt.Errorf("root-cert.pem holds %v, want %v", e.names(s.Bundle), trust)
	}
	if !pki.Contains(s.Bundle, s.ChainRoot) {
		return fmt.Errorf("root-cert.pem %v lacks the intermediate's own root %s", e.names(s.Bundle), chainRoot)
	}
	return nil
}

// expectSource checks a freshly issued intermediate: signed by signer, and
// ca.crt holding exactly the roots named, in order (the issuer puts the
// signing root first, then every other live root of the mount).
func expectSource(e *env, src *sourceBundle, signer *x509.Certificate, roots ...string) error {
	if err := src.Leaf.CheckSignatureFrom(signer); err != nil {
		return fmt.Errorf("the intermediate is not signed by %s: %w", e.name(signer), err)
	}
	if got := e.names(src.Roots); !slices.Equal(got, roots) {
		return fmt.Errorf("ca.crt holds %v, want %v", got, roots)
	}
	return nil
}

func sortedNames(e *env, certs []*x509.Certificate) []string {
	n := e.names(certs)
	slices.Sort(n)
	return n
}

// expectStaleAccepted has each workload that still holds its root-1
// certificate from the baseline call a fresh workload of the other cluster:
// each cluster's root-cert.pem must still trust root-1, and the old
// workload's own root-cert.pem must trust the peer's new root.
func (e *env) expectStaleAccepted(stale map[string]tls.Certificate, when string) {
	e.t.Helper()
	for _, err := range e.staleCalls(stale) {
		if err != nil {
			e.t.Fatalf("%s: a workload still holding its root-1 certificate was refused: %v", when, err)
		}
	}
	e.logf("  workloads still holding root-1 certificates from the baseline: accepted both ways")
}

// expectStaleRejected checks that once the grace period is over, a
// certificate chaining to root-1 is refused both ways: retiring the root
// did remove trust in it.
func (e *env) expectStaleRejected(stale map[string]tls.Certificate) {
	e.t.Helper()
	var reasons []string
	for i, err := range e.staleCalls(stale) {
		if err == nil {
			e.t.Fatalf("after the grace period, the workload holding a root-1 certificate in %s is still accepted (%s; %s)",
				[]string{"kind2", "kind3"}[i], e.describe(e.mustState("kind2")), e.describe(e.mustState("kind3")))
		}
		reason := lineWith(err, "unknown authority")
		if reason == "" {
			e.t.Fatalf("a root-1 certificate was refused for another reason than an unknown root: %v", err)
		}
		reasons = append(reasons, reason)
	}
	e.logf("  workloads still holding root-1 certificates: refused after the grace period:\n%s", strings.Join(reasons, "\n"))
}

// staleCalls has kind2's baseline workload call a fresh kind3 workload, and
// kind3's baseline workload call a fresh kind2 workload.
func (e *env) staleCalls(stale map[string]tls.Certificate) []error {
	e.t.Helper()
	k2, k3 := e.mustState("kind2"), e.mustState("kind3")
	var errs []error
	for _, pair := range [][2]*clusterState{{k2, k3}, {k3, k2}} {
		from, to := pair[0], pair[1]
		fresh, err := workload.Issue(to.CA, workloadOf(to.Name), time.Now(), mesh.WorkloadTTL)
		if err != nil {
			e.t.Fatal(err)
		}
		err = call(e.ctx, stale[from.Name], workloadOf(from.Name), from.CA.Roots, fresh, workloadOf(to.Name), to.CA.Roots)
		if err != nil {
			err = fmt.Errorf("baseline %s -> fresh %s: %w", from.Name, to.Name, err)
		}
		errs = append(errs, err)
	}
	return errs
}

// istiodAccepts is istiod's rule for a changed root-cert.pem (handleEvent in
// pilot/pkg/bootstrap/istio_ca.go, with MultiRootMesh on): one file must
// contain the other byte for byte. Otherwise istiod logs "Updating new
// ROOT-CA not supported" and ignores the whole cacerts update, the new
// intermediate included.
func istiodAccepts(old, updated []byte) bool {
	return bytes.Contains(updated, old) || bytes.Contains(old, updated)
}

// checkIstiodWouldAccept replays every root-cert.pem change the traffic
// loop saw through istiod's rule.
//
// Every change must pass: a refused change would leave istiod signing with
// the old intermediate, and its workloads cut off once the old root's grace
// period ends.
func (e *env) checkIstiodWouldAccept(tr *traffic) {
	e.t.Helper()
	for _, n := range []string{"kind2", "kind3"} {
		versions := tr.versions[n]
		var seq []string
		for _, v := range versions {
			seq = append(seq, fmt.Sprint(e.namesPEM(v)))
		}
		e.logf("%s root-cert.pem versions: %s", n, strings.Join(seq, " -> "))
		for i := 1; i < len(versions); i++ {
			old, updated := versions[i-1], versions[i]
			if istiodAccepts(old, updated) {
				continue
			}
			o, u := e.namesPEM(old), e.namesPEM(updated)
			e.t.Errorf("%s: root-cert.pem %v -> %v: istiod would refuse this change (neither file contains the other)", n, o, u)
		}
	}
}

func (e *env) namesPEM(b []byte) []string {
	certs, err := pki.DecodeCertificates(b, pki.MaxRootBundlePEMSize)
	if err != nil {
		return []string{"unparsable: " + err.Error()}
	}
	return e.names(certs)
}

// lineWith returns the line of err's text that contains substr, or "".
func lineWith(err error, substr string) string {
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}
