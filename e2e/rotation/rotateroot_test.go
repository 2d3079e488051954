package rotation

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/rotation"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/syncer"
)

const (
	// heldTTL is the lifetime of the certificates the traffic's workloads
	// get from istiod and keep until half of it is gone; --workload-cert-ttl
	// says it and --old-root-wait exceeds it by istiod's reload time.
	heldTTL = 10 * time.Second
	oldWait = 15 * time.Second
	// fleetGrace is every Certificate's meshtrust.io/root-grace.
	fleetGrace = 20 * time.Second
)

// TestRotateRoot drives `meshtrust vault rotate-root`, run as its own
// process, across three clusters, each with a real istiod, while
// workloads in every cluster call workloads in every other over mutual TLS
// with certificates their istiods issued, each kept until half its life is
// gone: no handshake may fail at any point.
//
//  1. --dry-run changes nothing;
//  2. a rotation to root-2 stopped after phase 2 is rolled back;
//  3. a rotation to root-3 stopped after phase 3 (every intermediate on
//     root-3) is rolled back;
//  4. a rotation to root-4 is stopped after phase 2, then kind4's API
//     server goes down (for the Vault owner): the command refuses to
//     advance, names kind4, exits 1 and changes nothing; kind4 comes back;
//     then kind3's controllers stop: kind2 moves, kind3 cannot, and the
//     run stops before phase 4, naming kind3 as lagging;
//  5. the rotation to root-4 is continued by runs that kill themselves
//     after each step and in the middle of the next (SIGKILL), and one
//     killed from outside while it waits on a renewal, until a run ends it.
//
// After every stop the fleet is checked: each cluster's istiod hands out a
// fresh certificate that chains to the root the rotation says it is on.
func TestRotateRoot(t *testing.T) {
	const crlExpiry = "48h0m0s"
	clusters := []string{"kind2", "kind3", "kind4"}
	e := newEnv(t, clusters...)
	e.logf("setup: root-1, three clusters enrolled on it, istiods plugged in")
	// Not bootstrap's default CRL expiry: each root rotate-root adds must
	// leave it as it is.
	e.mustCLI("vault", "bootstrap", "--crl-expiry", crlExpiry)
	e.registerRoot(root1Ref, "root-1")
	for _, n := range clusters {
		e.enrol(n, root1Ref)
		e.annotateCertificate(n, syncer.AnnotationRootGrace, fleetGrace.String())
		e.startControllers(n)
	}
	var holders []*holder
	// Certificates under root-1 kept to the end, which must then be refused.
	stale := map[string]tls.Certificate{}
	for _, n := range clusters {
		e.waitState(n, func(s *clusterState) error { return expectState(e, s, "root-1", []string{"root-1"}) })
		_, served, err := mesh.PlugIn(e.ctx, e.lab.Cluster(n), e.agents[n], workloadNamespace)
		if err != nil {
			t.Fatal(err)
		}
		stale[n] = served.Identity.Cert
		c := e.lab.Cluster(n)
		holders = append(holders, &holder{cluster: n, agent: istio.NewAgent(istio.AgentConfig{Kube: c.Clientset, CAAddr: c.Istiod.SecureGRPCAddr,
			ClusterID: c.Name, TrustDomain: c.Istiod.TrustDomain, Namespace: workloadNamespace, ServiceAccount: serviceAccountOf(n), TTL: heldTTL})})
	}
	tr := e.startMeshTraffic(holders)
	e.waitMore(tr, 12, "on root-1")

	apiServer, err := url.Parse(e.lab.Cluster("kind4").Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	down := newProxy(t, apiServer.Host)
	kubeconfig := e.kubeconfigVia("kind4", down.addr)
	rotate := func(to string, extraEnv []string, flags ...string) *process {
		args := []string{"vault", "rotate-root", "--from", root1Ref, "--to", to, "--common-name", "meshtrust root CA " + to,
			"--context", "kind2", "--context", "kind3", "--context", "kind4",
			"--workload-cert-ttl", heldTTL.String(), "--old-root-wait", oldWait.String(),
			"--issuer-roots-cache-ttl", "1s", "--poll-interval", "200ms", "--step-timeout", "2m"}
		return e.startCLI(kubeconfig, extraEnv, append(args, flags...)...)
	}
	// Every run's output is checked for the Vault token it holds.
	run := func(to string, extraEnv []string, flags ...string) (int, string) {
		t.Helper()
		code, out := rotate(to, extraEnv, flags...).wait()
		if strings.Contains(out, e.lab.Vault.RootToken) {
			t.Fatalf("rotate-root printed the Vault token:\n%s", out)
		}
		return code, out
	}
	mustRun := func(to string, flags ...string) string {
		t.Helper()
		code, out := run(to, nil, flags...)
		if code != 0 {
			t.Fatalf("meshtrust vault rotate-root --to %s %v: exit %d:\n%s", to, flags, code, out)
		}
		return out
	}
	// stepUntil runs rotate-root one step at a time (each run killed after
	// its first step) until every cluster's record says phase p.
	stepUntil := func(to string, p rotation.Phase) {
		t.Helper()
		for i := 0; ; i++ {
			rep := e.statusOf(clusters)
			if !slices.ContainsFunc(rep.Clusters, func(c statusCluster) bool { return c.Rotation == nil || c.Rotation.To != to || c.Rotation.Phase < p }) {
				return
			}
			if i > 3*len(clusters) {
				t.Fatalf("the fleet did not reach phase %s one step at a time", p)
			}
			if code, out := run(to, []string{"MESHTRUST_ROTATE_TEST_KILL=after:1"}); code != -int(syscall.SIGKILL) {
				t.Fatalf("rotate-root --to %s, killed after its first step: exit %d:\n%s", to, code, out)
			}
		}
	}
	// stopAfter runs until the hook kills it after step n.
	stopAfter := func(to string, n int) string {
		t.Helper()
		code, out := run(to, []string{"MESHTRUST_ROTATE_TEST_KILL=after:" + fmt.Sprint(n)})
		if code != -int(syscall.SIGKILL) {
			t.Fatalf("rotate-root --to %s with a kill after step %d: exit %d, want SIGKILL:\n%s", to, n, code, out)
		}
		return out
	}

	// ---- 1. --dry-run.
	plan := mustRun("meshtrust-root-2", "--dry-run")
	if !strings.Contains(plan, "1/6 root-added") || !strings.Contains(plan, "3/6 intermediates-moved") {
		t.Fatalf("the dry run does not list the phases:\n%s", plan)
	}
	if got := e.vaultIssuers(); !slices.Equal(got, []string{root1Ref}) {
		t.Fatalf("after --dry-run Vault issuers are %v, want only %s", got, root1Ref)
	}
	// --all-enrolled finds the same three clusters from their Vault policies.
	allCode, all := e.startCLI(kubeconfig, nil, "vault", "rotate-root", "--from", root1Ref, "--to", "meshtrust-root-2", "--all-enrolled", "--dry-run").wait()
	if allCode != 0 || !strings.Contains(all, "3 cluster(s)") || !strings.Contains(all, "cluster kind4: 0/6 not-started") {
		t.Fatalf("rotate-root --all-enrolled --dry-run: exit %d, want the three enrolled clusters:\n%s", allCode, all)
	}
	e.logf("1. --dry-run: plan printed, Vault unchanged; --all-enrolled found kind2, kind3 and kind4")

	// ---- 2. Rollback from phase 2.
	// Steps: add root-2, then one trust-both per cluster.
	stopAfter("meshtrust-root-2", 1+len(clusters))
	e.registerRoot("meshtrust-root-2", "root-2")
	e.expectFleet("meshtrust-root-2", rotation.BothTrusted)
	e.expectServed(map[string]string{"kind2": "root-1", "kind3": "root-1", "kind4": "root-1"}, "root-1", "root-2")
	e.expectStatusPhase(rotation.BothTrusted)
	e.logf("2. stopped at phase 2: every cluster trusts root-1 and root-2, signs under root-1")
	out := mustRun("meshtrust-root-2", "--rollback")
	e.logf("   --rollback:\n%s", indent(out))
	e.expectRolledBack("meshtrust-root-2")
	e.waitMore(tr, 12, "after the rollback from phase 2")

	// ---- 3. Rollback from phase 3.
	stopAfter("meshtrust-root-3", 1+2*len(clusters))
	e.registerRoot("meshtrust-root-3", "root-3")
	e.expectFleet("meshtrust-root-3", rotation.IntermediatesMoved)
	e.expectServed(map[string]string{"kind2": "root-3", "kind3": "root-3", "kind4": "root-3"}, "root-1", "root-3")
	e.waitMore(tr, 12, "with every cluster on root-3")
	e.logf("3. stopped at phase 3: every cluster signs under root-3, trusts root-1 too")
	out = mustRun("meshtrust-root-3", "--rollback")
	e.logf("   --rollback:\n%s", indent(out))
	e.expectRolledBack("meshtrust-root-3")
	e.waitMore(tr, 12, "after the rollback from phase 3")

	// ---- 4. A cluster that is down. Phase 2, reached one step per run,
	// the first run killed inside kind2's renewal.
	const to = "meshtrust-root-4"
	if code, out := run(to, []string{"MESHTRUST_ROTATE_TEST_KILL=mid:2"}); code != -int(syscall.SIGKILL) || !strings.Contains(lastLine(out), "renewing the intermediate") {
		t.Fatalf("rotate-root --to %s killed inside step 2: exit %d, want SIGKILL while renewing:\n%s", to, code, out)
	}
	e.registerRoot(to, "root-4")
	e.checkFleetServes(to)
	stepUntil(to, rotation.BothTrusted)
	e.expectFleet(to, rotation.BothTrusted)
	before := e.fleetSnapshot()
	down.stop()
	code, out := run(to, nil)
	if code != 1 || !strings.Contains(out, "cluster kind4") || !strings.Contains(out, "2/6 both-trusted") {
		t.Fatalf("rotate-root with kind4 down: exit %d, want 1 naming kind4 at phase 2:\n%s", code, out)
	}
	if after := e.fleetSnapshot(); after != before {
		t.Fatalf("rotate-root with kind4 down changed something:\nbefore %s\nafter  %s", before, after)
	}
	e.waitMore(tr, 12, "while kind4 is unreachable")
	e.logf("4. kind4 down: refused, nothing changed: %s", lastLine(out))
	down.start(t)

	// A cluster that lags: kind3's meshtrust controllers are stopped, so
	// its issuer no longer refreshes its CRLs. Moving kind2 would give it a
	// new intermediate whose CRL kind3 never takes, and kind3's proxies,
	// checking CRLs, would refuse kind2's workloads. So the run stops
	// before kind2's step, naming kind3, and changes nothing.
	e.stopControllers("kind3")
	before = e.fleetSnapshot()
	code, out = run(to, nil)
	if code != 1 || !strings.Contains(out, "cluster kind3 would not carry the CRL of kind2's next intermediate") {
		t.Fatalf("rotate-root with kind3's controllers stopped: exit %d, want 1 naming kind3 as lagging:\n%s", code, out)
	}
	if after := e.fleetSnapshot(); after != before {
		t.Fatalf("rotate-root with kind3's controllers stopped changed something:\nbefore %s\nafter  %s", before, after)
	}
	e.expectServed(map[string]string{"kind2": "root-1", "kind3": "root-1", "kind4": "root-1"}, "root-1", "root-4")
	e.waitMore(tr, 12, "while kind3 lags")
	e.logf("4. kind3 lagging: stopped before moving anything: %s", lastLine(out))
	e.startControllers("kind3")

	// ---- 5. Kill and resume, to the end.
	e.logf("5. kill and resume: one step per run, SIGKILL after it or inside the next")
	runs, kills := 0, 0
	external := false
	for done := false; !done; runs++ {
		if runs > 80 {
			t.Fatalf("rotate-root did not finish in %d runs", runs)
		}
		var hook []string
		switch {
		case !external && runs == 7:
			// Killed from outside while it waits on a renewal.
			p := rotate(to, nil)
			for line := range p.lines {
				if strings.Contains(line, "renewing the intermediate") {
					if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
			code, out := p.wait()
			if code != -int(syscall.SIGKILL) {
				t.Fatalf("external SIGKILL: exit %d:\n%s", code, out)
			}
			external, kills = true, kills+1
			e.logf("   run %d: SIGKILLed from outside during: %s", runs, lastLine(out))
			e.checkFleetServes(to)
			continue
		case runs%2 == 0:
			hook = []string{"MESHTRUST_ROTATE_TEST_KILL=after:1"}
		default:
			hook = []string{"MESHTRUST_ROTATE_TEST_KILL=mid:1"}
		}
		code, out := run(to, hook)
		switch code {
		case 0:
			done = true
			e.logf("   run %d: finished: %s", runs, lastLine(out))
		case -int(syscall.SIGKILL):
			kills++
			e.logf("   run %d (%s): killed after: %s", runs, hook[0], lastLine(out))
		default:
			t.Fatalf("run %d (%s): exit %d:\n%s", runs, hook, code, out)
		}
		e.checkFleetServes(to)
	}
	e.logf("   %d runs, %d killed", runs, kills)
	if got := e.vaultIssuers(); !slices.Equal(got, []string{to}) {
		t.Fatalf("after the rotation Vault issuers are %v, want only %s", got, to)
	}
	e.expectFleet(to, rotation.OldRootRetired)
	e.expectServed(map[string]string{"kind2": "root-4", "kind3": "root-4", "kind4": "root-4"}, "root-4")
	e.waitMore(tr, 12, "on root-4 only")
	delete(stale, "kind4")
	e.expectStaleRejected(stale)

	tr.stop()
	ok, failed, failures := tr.counts()
	e.logf("traffic over the whole test: %d handshakes succeeded, %d failed", ok, failed)
	for _, n := range clusters {
		e.logf("  %s's workload called with certificates under: %v", n, tr.signers[n])
	}
	if failed > 0 {
		t.Errorf("%d of %d handshakes failed; first failures:\n%s", failed, ok+failed, strings.Join(failures, "\n"))
	}
	if crl, err := e.vault.Logical().ReadWithContext(e.ctx, pkiMount+"/config/crl"); err != nil || crl == nil || crl.Data["expiry"] != crlExpiry || crl.Data["auto_rebuild"] != true {
		t.Errorf("after four roots added by rotate-root, %s/config/crl is %v (%v), want bootstrap's expiry %s with auto_rebuild", pkiMount, crl, err, crlExpiry)
	}
	rep := e.statusOf(clusters, "--expect-root", e.fingerprintOf("root-4"))
	for _, c := range rep.Clusters {
		if !slices.Equal(c.RootFingerprints, []string{e.fingerprintOf("root-4")}) {
			t.Errorf("meshtrust status: %s trusts %v, want root-4 only", c.Context, c.RootFingerprints)
		}
	}
}

// fleetView is one cluster as rotate-root sees it, for checks.
type fleetView struct {
	Signer    string
	Bundle    []string
	Published []string
	// CRLs and PublishedCRLs name the roots whose CRLs ca-crl.pem and
	// istiod's istio-ca-crl hold.
	CRLs, PublishedCRLs []string
}

// clusterView reads what a cluster shows: the root its cacerts
// intermediate chains to, root-cert.pem and ca-crl.pem, and what istiod
// publishes in istio-system.
func (e *env) clusterView(n string) fleetView {
	e.t.Helper()
	s := e.mustState(n)
	pub, err := istio.PublishedTrust(e.ctx, e.lab.Cluster(n).Clientset, istio.Namespace)
	if err != nil {
		e.t.Fatal(err)
	}
	return fleetView{Signer: e.name(s.ChainRoot), Bundle: e.names(s.Bundle), Published: e.names(pub.Roots.Certs),
		CRLs: e.crlRoots(s.CRLs), PublishedCRLs: e.crlRoots(pub.CRLs)}
}

// expectFleet checks each cluster against what phase p means.
func (e *env) expectFleet(to string, p rotation.Phase) {
	e.t.Helper()
	newRoot := e.rootName(to)
	for _, n := range []string{"kind2", "kind3", "kind4"} {
		v := e.clusterView(n)
		wantSigner := "root-1"
		if p >= rotation.IntermediatesMoved {
			wantSigner = newRoot
		}
		trusted := []string{"root-1", newRoot}
		var distrusted []string
		if p >= rotation.OldRootRetired {
			trusted, distrusted = []string{newRoot}, []string{"root-1"}
		}
		if v.Signer != wantSigner {
			e.t.Fatalf("phase %s: %s's intermediate is signed by %s, want %s", p, n, v.Signer, wantSigner)
		}
		for _, r := range trusted {
			if !slices.Contains(v.Bundle, r) || !slices.Contains(v.Published, r) {
				e.t.Fatalf("phase %s: %s root-cert.pem %v, istio-ca-root-cert %v: want %s in both", p, n, v.Bundle, v.Published, r)
			}
			// A proxy checking CRLs refuses a peer's chain to a root it
			// has no CRL of, so a root is trusted only with its CRL.
			if !slices.Contains(v.CRLs, r) || !slices.Contains(v.PublishedCRLs, r) {
				e.t.Fatalf("phase %s: %s ca-crl.pem has CRLs of %v, istio-ca-crl of %v: want %s's in both", p, n, v.CRLs, v.PublishedCRLs, r)
			}
		}
		for _, r := range distrusted {
			if slices.Contains(v.Bundle, r) || slices.Contains(v.Published, r) {
				e.t.Fatalf("phase %s: %s root-cert.pem %v, istio-ca-root-cert %v: want no %s", p, n, v.Bundle, v.Published, r)
			}
		}
	}
	if p >= rotation.OldRootRetired {
		// The retired root's last CRL leaves with it, once istiod has
		// published the new file.
		for _, n := range []string{"kind2", "kind3", "kind4"} {
			err := lab.WaitFor(e.ctx, waitLimit, func(context.Context) error {
				if v := e.clusterView(n); slices.Contains(v.CRLs, "root-1") || slices.Contains(v.PublishedCRLs, "root-1") {
					return fmt.Errorf("ca-crl.pem has CRLs of %v, istio-ca-crl of %v", v.CRLs, v.PublishedCRLs)
				}
				return nil
			})
			if err != nil {
				e.t.Fatalf("phase %s: %s still carries root-1's CRL: %v", p, n, err)
			}
		}
	}
}

// expectServed gets a fresh workload certificate from each cluster's
// istiod: it must chain to the root given for the cluster, and istiod's
// bundle must hold every root of trusted.
func (e *env) expectServed(signer map[string]string, trusted ...string) {
	e.t.Helper()
	for n, want := range signer {
		s, err := e.serve(e.ctx, n)
		if err != nil {
			e.t.Fatal(err)
		}
		if got := e.name(chainRoot(s)); got != want {
			e.t.Fatalf("%s's istiod issued a certificate chaining to %s, want %s", n, got, want)
		}
		for _, r := range trusted {
			if !slices.Contains(e.names(s.Roots.Certs), r) {
				e.t.Fatalf("%s's istiod publishes %v, want %s in it", n, e.names(s.Roots.Certs), r)
			}
		}
	}
}

// checkFleetServes checks, after any stop, that each cluster's istiod
// issues a certificate chaining to a root that every other cluster's
// istiod publishes: no pair is cut off.
func (e *env) checkFleetServes(to string) {
	e.t.Helper()
	served := map[string]*mesh.Served{}
	for _, n := range []string{"kind2", "kind3", "kind4"} {
		s, err := e.serve(e.ctx, n)
		if err != nil {
			e.t.Fatal(err)
		}
		served[n] = s
	}
	for from, a := range served {
		for peer, b := range served {
			if from != peer && !slices.Contains(e.names(b.Roots.Certs), e.name(chainRoot(a))) {
				e.t.Fatalf("%s's istiod signs under %s, which %s's istiod does not publish (%v)", from, e.name(chainRoot(a)), peer, e.names(b.Roots.Certs))
			}
		}
	}
}

// expectRolledBack checks a rollback's end: the new root gone from Vault,
// every cluster on root-1, no ca.crt carries the new root.
func (e *env) expectRolledBack(to string) {
	e.t.Helper()
	if got := e.vaultIssuers(); !slices.Equal(got, []string{root1Ref}) {
		e.t.Fatalf("after the rollback Vault issuers are %v, want only %s", got, root1Ref)
	}
	if e.vaultDefaultIssuer() != e.vaultIssuerID(root1Ref) {
		e.t.Fatal("after the rollback root-1 is not the default issuer")
	}
	for _, n := range []string{"kind2", "kind3", "kind4"} {
		src, err := e.readSource(e.ctx, n)
		if err != nil {
			e.t.Fatal(err)
		}
		if got := e.names(src.Roots); !slices.Equal(got, []string{"root-1"}) {
			e.t.Fatalf("after the rollback %s's ca.crt holds %v, want root-1 only", n, got)
		}
	}
	e.expectServed(map[string]string{"kind2": "root-1", "kind3": "root-1", "kind4": "root-1"}, "root-1")
	rep := e.statusOf([]string{"kind2", "kind3", "kind4"})
	for _, c := range rep.Clusters {
		if c.Rotation == nil || !c.Rotation.RolledBack || c.Rotation.To != to {
			e.t.Fatalf("meshtrust status: %s's rotation is %+v, want rolled back from %s", c.Context, c.Rotation, to)
		}
	}
	e.logf("   rolled back: Vault holds only root-1 (the default), every ca.crt [root-1], every istiod signs under root-1; status says rolled back")
}

// expectStatusPhase checks that `meshtrust status` shows phase p for
// every cluster.
func (e *env) expectStatusPhase(p rotation.Phase) {
	e.t.Helper()
	rep := e.statusOf([]string{"kind2", "kind3", "kind4"})
	for _, c := range rep.Clusters {
		if c.Rotation == nil || c.Rotation.Phase != p {
			e.t.Fatalf("meshtrust status: %s's rotation is %+v, want phase %s", c.Context, c.Rotation, p)
		}
	}
	table, _, _ := e.cli("status", "--kubeconfig", e.kubeconfig, "--context", "kind2", "--context", "kind3", "--context", "kind4")
	if !strings.Contains(table, p.Label()) {
		e.t.Fatalf("meshtrust status's table does not show %q:\n%s", p.Label(), table)
	}
}

// fleetSnapshot is everything rotate-root may change, as one string.
func (e *env) fleetSnapshot() string {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "issuers %v default %s;", e.vaultIssuers(), e.vaultDefaultIssuer())
	for _, n := range []string{"kind2", "kind3", "kind4"} {
		policy, err := e.vault.Sys().GetPolicyWithContext(e.ctx, "meshtrust-"+n)
		if err != nil {
			e.t.Fatal(err)
		}
		crt, err := mesh.Intermediate(e.ctx, e.lab.Cluster(n))
		if err != nil {
			e.t.Fatal(err)
		}
		var vci v1alpha1.VaultClusterIssuer
		if err := e.lab.Cluster(n).Client.Get(e.ctx, client.ObjectKey{Name: clusterIssuer}, &vci); err != nil {
			e.t.Fatal(err)
		}
		s := e.mustState(n)
		// Not root-cert.pem: the syncer drops a root at the end of its
		// grace, whatever rotate-root does.
		fmt.Fprintf(&b, " %s: policy %x, issuerRef %s, revision %d, record %s, cacerts %s;", n, sha256.Sum256([]byte(policy)), vci.Spec.PKI.IssuerRef,
			e.revision(n), crt.Annotations[rotation.RecordAnnotation], s.Serial)
	}
	return b.String()
}

// statusReportFull is `meshtrust status -o json` with the rotation.
type statusReportFull struct {
	Clusters []statusCluster `json:"clusters"`
}

type statusCluster struct {
	Context          string           `json:"context"`
	RootFingerprints []string         `json:"rootFingerprints"`
	Rotation         *rotation.Record `json:"rotation"`
}

// statusOf runs `meshtrust status -o json` for the clusters; with extra
// flags it must be healthy.
func (e *env) statusOf(clusters []string, extra ...string) statusReportFull {
	e.t.Helper()
	args := []string{"status", "--kubeconfig", e.kubeconfig, "-o", "json"}
	for _, c := range clusters {
		args = append(args, "--context", c)
	}
	out, errOut, code := e.cli(append(args, extra...)...)
	var rep statusReportFull
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("meshtrust status -o json (exit %d) printed no report: %v\n%s%s", code, err, out, errOut)
	}
	if len(extra) > 0 && code != 0 {
		e.t.Fatalf("meshtrust status %v: exit %d:\n%s%s", extra, code, out, errOut)
	}
	return rep
}

// rootName is the log name given to the issuer's root ("root-4").
func (e *env) rootName(ref string) string {
	return "root-" + strings.TrimPrefix(ref, "meshtrust-root-")
}

// fingerprintOf is the fingerprint of the root with log name n.
func (e *env) fingerprintOf(n string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for fp, name := range e.roots {
		if name == n {
			return fp
		}
	}
	e.t.Fatalf("no root named %s", n)
	return ""
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
