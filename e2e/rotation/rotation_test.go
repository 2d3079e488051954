package rotation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
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
// in kind2 and kind3 keep getting certificates from their clusters' real
// istiods (ISTIO_MULTIROOT_MESH=true) and calling each other over mutual
// TLS. At every step istiod must take the new cacerts: the proof is what it
// hands out (CreateCertificate's chain) and publishes (istio-ca-root-cert).
//
//  1. baseline: both intermediates chain to root-1;
//  2. root-2 is added in Vault; a root-cert.pem holding only root-2, written
//     around the syncer, is refused by istiod (the negative control); then
//     both intermediates are renewed: both root-cert.pem files trust root-1
//     and root-2;
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
	for _, n := range clusters {
		base := e.waitState(n, func(s *clusterState) error {
			return expectState(e, s, "root-1", []string{"root-1"})
		})
		e.logf("  %s", e.describe(base))
	}
	// The istiods started before cacerts existed, on their own self-signed
	// CAs: restart them, as Istio's plug-in CA guide says.
	// Workload certificates issued then, under root-1, are kept by their
	// workloads through the rotation, as a sidecar keeps its certificate
	// until it is due for renewal.
	stale := map[string]tls.Certificate{}
	for _, n := range clusters {
		line, served, err := mesh.PlugIn(e.ctx, e.lab.Cluster(n), e.agents[n], workloadNamespace)
		if err != nil {
			t.Fatal(err)
		}
		e.logf("  %s's istiod restarted: %s; signs %s under %s", n, line.Message(), workloadOf(n), e.name(chainRoot(served)))
		stale[n] = served.Identity.Cert
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
	e.expectIstiodRefusesRootSwap(tr, "kind3", r2)
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
	// From here on, istiod's reactions to the renewals and to the syncer
	// dropping root-1 at the end of the grace period.
	marks := map[string]lab.LogMark{}
	for _, n := range clusters {
		marks[n] = e.lab.Cluster(n).Istiod.Mark()
	}
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
		e.waitIstiod(n, marks[n])
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
	e.checkOlderIstiodWouldAccept(tr)

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

// staleCalls has kind2's baseline workload call a kind3 workload with a
// certificate fresh from kind3's istiod, and kind3's baseline workload a
// fresh kind2 workload. Each side verifies with what its own cluster's
// istiod publishes now.
func (e *env) staleCalls(stale map[string]tls.Certificate) []error {
	e.t.Helper()
	var errs []error
	for _, pair := range [][2]string{{"kind2", "kind3"}, {"kind3", "kind2"}} {
		from, to := pair[0], pair[1]
		fresh, err := e.serve(e.ctx, to)
		if err != nil {
			e.t.Fatal(err)
		}
		fromTrust, err := istio.PublishedTrust(e.ctx, e.lab.Cluster(from).Clientset, workloadNamespace)
		if err != nil {
			e.t.Fatal(err)
		}
		err = call(e.ctx, stale[from], workloadOf(from), fromTrust, fresh.Identity.Cert, workloadOf(to), &istio.ProxyTrust{Roots: fresh.Roots, CRLs: fresh.CRLs})
		if err != nil {
			err = fmt.Errorf("baseline %s -> fresh %s: %w", from, to, err)
		}
		errs = append(errs, err)
	}
	return errs
}

// expectIstiodRefusesRootSwap is the negative control of "istiod takes
// every root-cert.pem the syncer writes": with the cluster's controllers
// stopped, it writes a cacerts whose root-cert.pem holds only root-2 where
// istiod has root-1 (neither contains the other), with a valid intermediate
// for the cluster signed by root-2 in Vault: the root swap an operator
// might attempt by hand. istiod must refuse it, quoting its rule, and keep
// signing with the root-1 intermediate while traffic flows. The previous
// cacerts is then put back and the controllers restarted.
func (e *env) expectIstiodRefusesRootSwap(tr *traffic, name string, root2 *x509.Certificate) {
	e.t.Helper()
	c := e.lab.Cluster(name)
	e.logf("  negative control: %s's controllers stopped; a cacerts with root-cert.pem = [root-2] only is written around the syncer", name)
	e.stopControllers(name)
	before, err := mesh.CACerts(e.ctx, c)
	if err != nil {
		e.t.Fatal(err)
	}
	served, err := e.serve(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	fixture := e.rootSwapFixture(name, root2)
	tr.fixture(name, fixture[pki.RootCertKey])

	swapped := before.DeepCopy()
	swapped.Data = fixture
	if err := c.Client.Update(e.ctx, swapped); err != nil {
		e.t.Fatalf("writing the fixture into %s's cacerts: %v", name, err)
	}
	_, _, err = mesh.WaitIstiodTakes(e.ctx, c, e.agents[name], workloadNamespace)
	var refused *lab.CACertsRefusedError
	if !errors.As(err, &refused) || !strings.Contains(refused.Line.Text, "Updating new ROOT-CA not supported") {
		e.t.Fatalf("%s: istiod was given root-cert.pem [root-2] over [root-1]: %v; want it refused", name, err)
	}
	e.logf("  %s's istiod refused it: %q", name, refused.Line.Message())
	now, err := e.serve(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	if !now.Intermediate().Equal(served.Intermediate()) || !slices.Equal(e.names(now.Roots.Certs), []string{"root-1"}) {
		e.t.Fatalf("%s: after refusing, istiod signs with %x and publishes %v; want the previous intermediate %x and [root-1]",
			name, now.Intermediate().SerialNumber, e.names(now.Roots.Certs), served.Intermediate().SerialNumber)
	}
	e.logf("  %s's istiod still signs with intermediate %.8s… and publishes %v", name, now.Intermediate().SerialNumber.Text(16), e.names(now.Roots.Certs))

	mark := c.Istiod.Mark()
	restored, err := mesh.CACerts(e.ctx, c)
	if err != nil {
		e.t.Fatal(err)
	}
	restored.Data = before.Data
	if err := c.Client.Update(e.ctx, restored); err != nil {
		e.t.Fatalf("restoring %s's cacerts: %v", name, err)
	}
	tr.fixtureGone(name)
	e.waitIstiod(name, mark)
	e.startControllers(name)
	e.logf("  %s's cacerts restored and its controllers restarted", name)
}

// rootSwapFixture is a complete, valid cacerts for the cluster under root-2
// alone: an intermediate for its trust domain that Vault's root-2 signs
// (with the root token, around meshtrust), its key, and root-cert.pem =
// root-2.
func (e *env) rootSwapFixture(name string, root2 *x509.Certificate) map[string][]byte {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name + " fixture intermediate"}}, key)
	if err != nil {
		e.t.Fatal(err)
	}
	sec, err := e.vault.Logical().WriteWithContext(e.ctx, pkiMount+"/issuer/"+root2Ref+"/sign-intermediate", map[string]any{
		"csr":                   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		"common_name":           name + " fixture intermediate",
		"ttl":                   "24h",
		"max_path_length":       0,
		"permitted_uri_domains": name,
	})
	if err != nil || sec == nil {
		e.t.Fatalf("signing the fixture intermediate under root-2: %v", err)
	}
	certPEM, _ := sec.Data["certificate"].(string)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		e.t.Fatal(err)
	}
	rootPEM := pki.EncodeCertificates(root2)
	return map[string][]byte{
		pki.CACertKey:    []byte(certPEM),
		pki.CAKeyKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pki.CertChainKey: append([]byte(certPEM+"\n"), rootPEM...),
		pki.RootCertKey:  rootPEM,
	}
}

// olderIstiodAccepts is the rule for a changed root-cert.pem of istiods
// older than the one in the lab (handleEvent in
// pilot/pkg/bootstrap/istio_ca.go with MultiRootMesh on, before
// istio/istio#59909 compared certificate sets): one file must contain the
// other byte for byte. Otherwise such an istiod logs "Updating new ROOT-CA
// not supported" and ignores the whole cacerts update, the new
// intermediate included.
func olderIstiodAccepts(old, updated []byte) bool {
	return bytes.Contains(updated, old) || bytes.Contains(old, updated)
}

// checkOlderIstiodWouldAccept replays every root-cert.pem change the
// traffic loop saw in cacerts through the older, byte-wise rule. The lab's
// istiod took each change (the proof); this cross-check shows the syncer's
// files would also pass the stricter rule istiods still in the field apply.
func (e *env) checkOlderIstiodWouldAccept(tr *traffic) {
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
			if olderIstiodAccepts(old, updated) {
				continue
			}
			o, u := e.namesPEM(old), e.namesPEM(updated)
			e.t.Errorf("%s: root-cert.pem %v -> %v: an istiod before istio/istio#59909 would refuse this change (neither file contains the other)", n, o, u)
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
