// Package federation is the multi-cluster identity-federation story, run
// for real on the lab: shared trust from one Vault root, cross-cluster mTLS
// with SPIFFE identities, a live rotation, and a cluster that joins late.
// Every workload certificate comes from the cluster's real istiod, which
// reads the cacerts meshtrust writes. `make demo` and the e2e test both run
// it; there is one implementation.
package federation

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// rotationHandshakes is how many handshakes the live rotation needs on the
// old intermediate before it renews, and on the new one after.
const rotationHandshakes = 10

// namespace holds the story's workloads in every cluster.
const namespace = "default"

// serviceAccount is the story's workload in each cluster (bookinfo).
func serviceAccount(cluster string) string {
	switch cluster {
	case "kind1":
		return "bookinfo-ratings"
	case "kind2":
		return "bookinfo-productpage"
	default:
		return "bookinfo-reviews"
	}
}

// Config says where the story prints and writes.
type Config struct {
	// Out receives one line per step, with elapsed time.
	Out io.Writer
	// Dir holds the lab's data and every component's log.
	Dir string
	// ExportDir receives each cluster's cacerts files, as istiod mounts them.
	ExportDir string
	// Logger receives meshtrust's controller logs; the caller points it at
	// a file.
	Logger logr.Logger
}

// Check is one verified claim of the story.
type Check struct {
	Name   string
	Passed bool
	Detail string
}

// Result lists every check in the order it ran.
type Result struct {
	Checks []Check
	Took   time.Duration
}

// Passed reports whether every check passed.
func (r *Result) Passed() bool {
	for _, c := range r.Checks {
		if !c.Passed {
			return false
		}
	}
	return len(r.Checks) > 0
}

// WriteSummary prints the checks as a table, then the total time.
func (r *Result) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range r.Checks {
		verdict := "pass"
		if !c.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, verdict, c.Detail)
	}
	tw.Flush()
	fmt.Fprintf(w, "total time: %s\n", r.Took.Round(100*time.Millisecond))
}

type story struct {
	cfg      Config
	began    time.Time
	lab      *lab.Lab
	owner    *mesh.CLI
	result   Result
	managers []*mesh.Controllers
	// agents get each cluster's workload certificate from its istiod.
	agents map[string]*istio.Agent
}

// Run tells the story. It returns an error only when the story could not
// be told at all; a claim that does not hold is a failed Check.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	s := &story{cfg: cfg, began: time.Now()}
	err := s.run(ctx)
	for _, m := range s.managers {
		// An error stopping is not a claim of the story; one that stopped
		// the controllers early shows in waitCACerts.
		_ = m.Stop()
	}
	for _, a := range s.agents {
		a.Close()
	}
	if s.lab != nil {
		err = errors.Join(err, s.lab.Stop())
	}
	s.result.Took = time.Since(s.began)
	return &s.result, err
}

func (s *story) run(ctx context.Context) error {
	s.say("starting the lab: Vault, clusters kind1, kind2, kind3 (trust domains = names), cert-manager and istiod in each")
	l, err := lab.Start(ctx, lab.Options{Clusters: []string{"kind1", "kind2", "kind3"}, Dir: s.cfg.Dir, KeepDir: true,
		IssuanceBackoff: 10 * time.Second, Istiod: true})
	if err != nil {
		return err
	}
	s.lab = l
	for _, tm := range l.Timings {
		s.say("  %-14s %-26s started in %s", tm.Component, tm.Address, tm.Took.Round(time.Millisecond))
	}
	s.say("  lab up in %s; logs: %s", time.Since(s.began).Round(time.Millisecond), strings.Join(l.LogPaths(), ", "))
	s.memory("")
	if s.owner, err = mesh.NewCLI(l, "kind1"); err != nil {
		return err
	}
	s.agents = map[string]*istio.Agent{}
	for _, c := range l.Clusters {
		if s.agents[c.Name], err = mesh.Workload(c, namespace, serviceAccount(c.Name)); err != nil {
			return err
		}
	}

	s.meshConfigs(ctx)

	s.say("before federation: each cluster's istiod runs its own self-signed CA (Istio's default)")
	s.beforeFederation(ctx)

	s.say("meshtrust vault bootstrap: the shared root is generated inside Vault")
	if out, code := s.cli(ctx, "vault", "bootstrap"); code != 0 {
		return fmt.Errorf("vault bootstrap failed (exit %d): %s", code, out)
	} else {
		s.indent(out)
	}

	for _, name := range []string{"kind2", "kind3"} {
		if err := s.enrol(ctx, name); err != nil {
			return err
		}
	}
	cas, err := s.waitCACerts(ctx, "kind2", "kind3")
	if err != nil {
		return err
	}
	s.checkSharedRoot(cas["kind2"], cas["kind3"])
	s.plugIn(ctx, "istiod signs with meshtrust's intermediate", "kind2", "kind3")
	s.status(ctx, "status healthy, 2×2 trust matrix all yes", true, "kind2", "kind3")
	s.crossClusterMTLS(ctx, "kind2", "kind3", "cross-cluster mTLS with secure naming")
	s.isolation(ctx, cas["kind2"])
	if err := s.rotate(ctx); err != nil {
		return err
	}
	if err := s.lateJoin(ctx); err != nil {
		return err
	}
	if err := s.compromised(ctx); err != nil {
		return err
	}
	s.memory(" at the end")
	return nil
}

// memory prints the RSS of the lab's server processes, each istiod's among
// them, and of this process.
func (s *story) memory(when string) {
	const mib = 1 << 20
	servers, err := lab.Descendants(os.Getpid())
	if err != nil {
		return
	}
	var istiods []string
	for _, c := range s.lab.Clusters {
		if c.Istiod != nil {
			istiods = append(istiods, fmt.Sprintf("%s %d MiB", c.Name, c.Istiod.ResidentBytes()/mib))
		}
	}
	s.say("  memory (RSS)%s: %d server processes %d MiB, of which istiod %s; this process, with 3 in-process cert-managers, %d MiB",
		when, len(servers), lab.ResidentBytes(servers...)/mib, strings.Join(istiods, ", "), lab.ResidentBytes(os.Getpid())/mib)
}

func (s *story) say(format string, args ...any) {
	fmt.Fprintf(s.cfg.Out, "[%6.1fs] %s\n", time.Since(s.began).Seconds(), fmt.Sprintf(format, args...))
}

func (s *story) indent(text string) {
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintf(s.cfg.Out, "          | %s\n", line)
	}
}

func (s *story) check(name string, err error, detail string) {
	c := Check{Name: name, Passed: err == nil, Detail: detail}
	if err != nil {
		c.Detail = err.Error()
	}
	s.result.Checks = append(s.result.Checks, c)
	verdict := "ok"
	if err != nil {
		verdict = "FAILED"
	}
	s.say("  check %-58s %s: %s", name, verdict, c.Detail)
}

// cli runs `meshtrust args...` in-process, as the Vault owner would, and
// returns its standard output followed by its standard error.
func (s *story) cli(ctx context.Context, args ...string) (string, int) {
	out, errOut, code := s.owner.Run(ctx, args...)
	return out + errOut, code
}

// meshConfigs checks that each istiod runs with its cluster's trust domain
// and the other clusters' as aliases, as istiod itself reports them.
func (s *story) meshConfigs(ctx context.Context) {
	var errs []error
	for _, c := range s.lab.Clusters {
		mc, err := c.Istiod.ActiveMesh(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.say("  %s's istiod: trustDomain %s, trustDomainAliases %v (the istio ConfigMap, projected into --meshConfig)",
			c.Name, mc.GetTrustDomain(), mc.GetTrustDomainAliases())
		if mc.GetTrustDomain() != c.Istiod.TrustDomain || !slices.Equal(mc.GetTrustDomainAliases(), c.Istiod.Aliases) {
			errs = append(errs, fmt.Errorf("%s's istiod runs trustDomain %q, aliases %v; want %q, %v",
				c.Name, mc.GetTrustDomain(), mc.GetTrustDomainAliases(), c.Istiod.TrustDomain, c.Istiod.Aliases))
		}
	}
	s.check("istiods run their trust domains, the others as aliases", errors.Join(errs...), "read from istiod's /debug/mesh")
}

// beforeFederation shows the problem: two clusters whose istiods sign
// with CAs of their own do not trust each other's workloads.
func (s *story) beforeFederation(ctx context.Context) {
	const name = "before: workloads of self-signed istiods refuse each other"
	served := map[string]*mesh.Served{}
	for _, n := range []string{"kind2", "kind3"} {
		// A new istiod publishes its bundle in each namespace moments after
		// it starts; a pod's kubelet waits for it in the same way.
		var sv *mesh.Served
		err := lab.WaitFor(ctx, mesh.IstiodWait, func(ctx context.Context) error {
			var err error
			sv, err = s.serve(ctx, n)
			return err
		})
		if err != nil {
			s.check(name, err, "")
			return
		}
		served[n] = sv
		line := s.istiodLine(n, istio.SelfSignedCALine)
		s.say("  %s: istiod logged %q; signs %s directly with its root %s", n, line, s.agents[n].ID(), rootName(sv.Roots.Certs[0]))
	}
	if _, err := s.handshake(ctx, served["kind2"], "kind2", served["kind3"], "kind3"); err == nil {
		s.check(name, errors.New("a cross-cluster handshake succeeded without shared trust"), "")
	} else {
		s.check(name, nil, "handshake refused: "+firstLine(err))
	}
}

// serve gets the cluster's workload a certificate from its istiod, with the
// bundle istiod publishes in the workload's namespace.
func (s *story) serve(ctx context.Context, cluster string) (*mesh.Served, error) {
	return mesh.Serve(ctx, s.lab.Cluster(cluster), s.agents[cluster], namespace)
}

// istiodLine is the first line of the cluster's istiod log that contains
// substr, or a note that there is none.
func (s *story) istiodLine(cluster, substr string) string {
	lines, err := s.lab.Cluster(cluster).Istiod.LinesSince(0, substr)
	if err != nil || len(lines) == 0 {
		return "(no line with " + substr + ")"
	}
	return lines[0].Message()
}

func rootName(c *x509.Certificate) string {
	return fmt.Sprintf("%q (sha256 %s…)", c.Subject.String(), pki.Fingerprint(c)[:16])
}

// enrol runs `meshtrust vault enroll`, applies the YAML it prints, and
// starts meshtrust's controllers in the cluster.
func (s *story) enrol(ctx context.Context, name string) error {
	c := s.lab.Cluster(name)
	s.say("meshtrust vault enroll --cluster %s --trust-domain %s (Kubernetes auth against %s's own API server)", name, name, name)
	applied, err := s.owner.Enrol(ctx, c)
	if err != nil {
		return err
	}
	s.say("  applied %s", strings.Join(applied, ", "))
	m, err := mesh.StartControllers(ctx, c, mesh.ControllerOptions(s.cfg.Logger.WithValues("cluster", c.Name)))
	if err != nil {
		return err
	}
	s.managers = append(s.managers, m)
	s.say("  meshtrust issuer and syncer running for %s", c.Name)
	return nil
}

// readCACerts reads a cluster's cacerts straight from its API server.
func (s *story) readCACerts(ctx context.Context, name string) (*workload.CA, error) {
	secret, err := mesh.CACerts(ctx, s.lab.Cluster(name))
	if err != nil {
		return nil, err
	}
	return workload.LoadCA(secret.Data)
}

func (s *story) waitCACerts(ctx context.Context, names ...string) (map[string]*workload.CA, error) {
	s.say("waiting for cacerts in %s", strings.Join(names, " and "))
	cas := map[string]*workload.CA{}
	err := lab.WaitFor(ctx, 2*time.Minute, func(ctx context.Context) error {
		for _, n := range names {
			ca, err := s.readCACerts(ctx, n)
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			// cert-manager's readiness controller may mark the Certificate
			// Ready after the syncer wrote cacerts; `meshtrust status`
			// rightly calls a not-Ready source unhealthy.
			crt, err := mesh.Intermediate(ctx, s.lab.Cluster(n))
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			if err := mesh.ReadyAt(crt, 0); err != nil {
				return fmt.Errorf("%s: Certificate %s/%s: %w", n, crt.Namespace, crt.Name, err)
			}
			// ca-crl.pem follows once every enrolled cluster has published
			// its intermediate's CRL in Vault (the syncer's CRLSynced).
			if err := mesh.CRLSynced(crt); err != nil {
				return fmt.Errorf("%s: Certificate %s/%s: %w", n, crt.Namespace, crt.Name, err)
			}
			cas[n] = ca
		}
		return nil
	})
	if err != nil {
		// Controllers that stopped early say why no cacerts came.
		for _, m := range s.managers {
			err = errors.Join(err, m.Exited())
		}
		return nil, fmt.Errorf("waiting for cacerts: %w", err)
	}
	for _, n := range names {
		s.say("  %s cacerts: intermediate serial %x, not after %s, name constraint %v; ca-crl.pem: %s", n, cas[n].Cert.SerialNumber, cas[n].Cert.NotAfter.UTC().Format(time.RFC3339), cas[n].Cert.PermittedURIDomains, s.crlSummary(ctx, n))
	}
	return cas, nil
}

func (s *story) checkSharedRoot(a, b *workload.CA) {
	rootA, rootB := rootOf(a), rootOf(b)
	switch {
	case rootA == nil || rootB == nil:
		s.check("same root, different intermediates", errors.New("a cacerts chain has no root"), "")
	case !rootA.Equal(rootB):
		s.check("same root, different intermediates", fmt.Errorf("roots differ: %s vs %s", pki.Fingerprint(rootA), pki.Fingerprint(rootB)), "")
	case a.Cert.Equal(b.Cert):
		s.check("same root, different intermediates", errors.New("both clusters hold the same intermediate"), "")
	default:
		s.check("same root, different intermediates", nil, "root sha256 "+pki.Fingerprint(rootA)[:16]+"…")
	}
}

func rootOf(ca *workload.CA) *x509.Certificate {
	if len(ca.Chain) == 0 {
		return nil
	}
	return ca.Chain[len(ca.Chain)-1]
}

// status prints `meshtrust status` for the given contexts and checks it
// exits 0 (everything healthy, the trust matrix all yes), or, when healthy
// is false, 1 with only the first context unhealthy.
func (s *story) status(ctx context.Context, check string, healthy bool, names ...string) {
	args := []string{"status", "--kubeconfig", s.owner.Kubeconfig}
	for _, n := range names {
		args = append(args, "--context", n)
	}
	s.say("meshtrust status %s", strings.Join(args[3:], " "))
	out, code := s.cli(ctx, args...)
	s.indent(out)
	var err error
	detail := "exit 0"
	switch {
	case healthy && code != 0:
		err = fmt.Errorf("meshtrust status exited %d", code)
	case !healthy && (code != 1 || !strings.Contains(out, "UNHEALTHY: "+names[0]+"\n") || !strings.Contains(out, "is revoked")):
		err = fmt.Errorf("meshtrust status exited %d; want 1 naming %s alone, its intermediate revoked", code, names[0])
	case !healthy:
		detail = "exit 1, UNHEALTHY: " + names[0]
	}
	s.check(check, err, detail)
}

// plugIn restarts the istiods of the clusters named, which started before
// their cacerts existed, and checks each signs with meshtrust's
// intermediate.
func (s *story) plugIn(ctx context.Context, check string, names ...string) {
	var errs []error
	for _, n := range names {
		s.say("%s: cacerts exists; kubectl rollout restart deployment/istiod (an istiod on its self-signed CA does not watch ROOT_CA_DIR)", n)
		line, served, err := mesh.PlugIn(ctx, s.lab.Cluster(n), s.agents[n], namespace)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.say("  %s: istiod logged %q; signs %s with intermediate serial %x; %s publishes root %s",
			n, line.Message(), s.agents[n].ID(), served.Intermediate().SerialNumber, istio.RootCertConfigMap, rootName(served.Roots.Certs[0]))
	}
	s.check(check, errors.Join(errs...), "restarted on the projected cacerts, istiod signs with meshtrust's intermediate")
}

// handshake has the client workload (its certificate and published bundle
// from its cluster's istiod) call the server workload over mutual TLS 1.3.
// Each side verifies the other against the istio-ca-root-cert of its own
// cluster and, as Envoy does, every CA of the peer's chain against the
// CRLs its istiod publishes in istio-ca-crl, and checks the peer's SPIFFE
// ID.
func (s *story) handshake(ctx context.Context, client *mesh.Served, clientCluster string, server *mesh.Served, serverCluster string) (workload.Seen, error) {
	return workload.Handshake(ctx,
		workload.Peer{Cert: server.Identity.Cert, Roots: server.Roots.Pool, CRLs: server.CRLs, Expect: s.agents[clientCluster].ID()},
		workload.Peer{Cert: client.Identity.Cert, Roots: client.Roots.Pool, CRLs: client.CRLs, Expect: s.agents[serverCluster].ID()})
}

// crossClusterMTLS has from's workload call to's, both with certificates
// their istiods just issued.
func (s *story) crossClusterMTLS(ctx context.Context, from, to, check string) {
	s.say("cross-cluster mTLS: %s (%s) calls %s (%s), TLS 1.3, client certificates required, certificates from each cluster's istiod",
		serviceAccount(from), from, serviceAccount(to), to)
	client, err := s.serve(ctx, from)
	var server *mesh.Served
	if err == nil {
		server, err = s.serve(ctx, to)
	}
	var seen workload.Seen
	if err == nil {
		seen, err = s.handshake(ctx, client, from, server, to)
	}
	if err == nil {
		s.say("  %s (%s) saw %s", serviceAccount(to), to, seen.ServerSaw)
		s.say("  %s (%s) saw %s", serviceAccount(from), from, seen.ClientSaw)
	}
	s.check(check, err, "each side verified the other against its own cluster's "+istio.RootCertConfigMap)
}

// isolation signs, with kind2's intermediate key (from its cacerts, as
// istiod holds it), a certificate for kind3's workload, which kind3's istiod
// would never sign for kind2, and verifies it as kind3's workloads do.
func (s *story) isolation(ctx context.Context, kind2 *workload.CA) {
	const name = "name constraint stops a forged identity"
	s.say("isolation: kind2's intermediate key signs a certificate claiming a kind3 identity")
	forged := s.agents["kind3"].ID()
	cert, err := workload.Issue(kind2, forged, time.Now(), mesh.WorkloadTTL)
	if err != nil {
		s.check(name, err, "")
		return
	}
	roots, err := istio.PublishedRoots(ctx, s.lab.Cluster("kind3").Clientset, namespace)
	if err != nil {
		s.check(name, err, "")
		return
	}
	if _, err = workload.Verify(cert.Certificate, roots.Pool, nil, forged, time.Now()); err == nil {
		s.check(name, errors.New("kind3 accepted a kind3 identity signed by kind2's intermediate"), "")
		return
	}
	s.say("  rejected: %s", err)
	s.check(name, nil, "rejected by x509 name constraints, verified against kind3's "+istio.RootCertConfigMap)
}

// rotate renews kind2's intermediate while kind2's and kind3's workloads
// keep asking their istiods for certificates and calling each other.
func (s *story) rotate(ctx context.Context) error {
	const name = "live rotation: istiod reloads, zero failures"
	kind2 := s.lab.Cluster("kind2")
	before, err := s.readCACerts(ctx, "kind2")
	if err != nil {
		return err
	}
	s.say("live rotation: certificate requests and handshakes loop while kind2's intermediate is renewed (serial %x)", before.Cert.SerialNumber)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	var tally struct {
		requests, failedRequests, handshakes, failedHandshakes, onNew int
		firstFailure                                                  error
		newCA                                                         *x509.Certificate
		firstNew                                                      time.Time
	}
	var onOld atomic.Int64
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for loopCtx.Err() == nil {
			var served [2]*mesh.Served
			var err error
			for n, cluster := range []string{"kind2", "kind3"} {
				tally.requests++
				if served[n], err = s.serve(loopCtx, cluster); err != nil {
					break
				}
			}
			if loopCtx.Err() != nil {
				return
			}
			if err != nil {
				tally.failedRequests++
				tally.firstFailure = cmp.Or(tally.firstFailure, err)
				continue
			}
			tally.handshakes++
			if _, err := s.handshake(loopCtx, served[0], "kind2", served[1], "kind3"); err != nil {
				if loopCtx.Err() != nil {
					return
				}
				tally.failedHandshakes++
				tally.firstFailure = cmp.Or(tally.firstFailure, err)
				continue
			}
			if ca := served[0].Intermediate(); !ca.Equal(before.Cert) {
				if tally.newCA == nil {
					tally.firstNew = time.Now()
				}
				tally.newCA = ca
				if tally.onNew++; tally.onNew >= rotationHandshakes {
					return
				}
			} else {
				onOld.Add(1)
			}
		}
	}()

	// Renew only once handshakes are flowing on the old intermediate, so
	// the loop straddles the switch.
	if err := lab.WaitFor(ctx, time.Minute, func(context.Context) error {
		select {
		case <-loopDone:
			return nil
		default:
		}
		if onOld.Load() < rotationHandshakes {
			return fmt.Errorf("%d handshakes so far", onOld.Load())
		}
		return nil
	}); err != nil {
		return err
	}
	renewed := time.Now()
	if err := mesh.TriggerRenewal(ctx, kind2, 30*time.Second, "the meshtrust demo"); err != nil {
		return err
	}
	select {
	case <-loopDone:
	case <-time.After(2 * time.Minute):
		stopLoop()
		<-loopDone
	}

	after, err := s.readCACerts(ctx, "kind2")
	if err != nil {
		return err
	}
	// istiod's own account: its reaction to the projected cacerts.
	reaction, _, checkErr := mesh.WaitIstiodTakes(ctx, kind2, s.agents["kind2"], namespace)
	switch {
	case checkErr != nil:
	case tally.newCA == nil:
		checkErr = fmt.Errorf("kind2's istiod never signed with a new intermediate (%d handshakes, %d failed; log: %s)",
			tally.handshakes, tally.failedHandshakes, kind2.Istiod.LogPath)
	case !tally.newCA.Equal(after.Cert):
		checkErr = fmt.Errorf("kind2's istiod signs with serial %x, cacerts holds %x", tally.newCA.SerialNumber, after.Cert.SerialNumber)
	}
	if tally.failedRequests+tally.failedHandshakes > 0 {
		checkErr = errors.Join(checkErr, fmt.Errorf("%d of %d certificate requests and %d of %d handshakes failed, first: %v",
			tally.failedRequests, tally.requests, tally.failedHandshakes, tally.handshakes, tally.firstFailure))
	}
	if !reaction.Began.IsZero() {
		s.say("  kind2's istiod at %s: %q", reaction.Verdict.At.UTC().Format("15:04:05.000"), reaction.Verdict.Message())
	}
	if tally.newCA != nil {
		s.say("  kind2 cacerts serial %x -> %x; kind2's workload certificates signed by %x from %s after the renewal",
			before.Cert.SerialNumber, after.Cert.SerialNumber, tally.newCA.SerialNumber, tally.firstNew.Sub(renewed).Round(time.Millisecond))
	}
	s.check(name, checkErr, fmt.Sprintf("%d certificate requests and %d handshakes, %d failed, %d handshakes on the new intermediate",
		tally.requests, tally.handshakes, tally.failedRequests+tally.failedHandshakes, tally.onNew))
	return nil
}

// lateJoin enrols kind1 last: it must gain trust without disturbing the
// members already in the mesh.
func (s *story) lateJoin(ctx context.Context) error {
	before := map[string]*big.Int{}
	for _, n := range []string{"kind2", "kind3"} {
		ca, err := s.readCACerts(ctx, n)
		if err != nil {
			return err
		}
		before[n] = ca.Cert.SerialNumber
	}
	s.say("a cluster joins late: kind1")
	if err := s.enrol(ctx, "kind1"); err != nil {
		return err
	}
	if _, err := s.waitCACerts(ctx, "kind1"); err != nil {
		return err
	}
	s.plugIn(ctx, "late joiner's istiod signs with its intermediate", "kind1")
	s.status(ctx, "status healthy, 3×3 trust matrix all yes", true, "kind1", "kind2", "kind3")
	s.crossClusterMTLS(ctx, "kind1", "kind3", "late joiner: cross-cluster mTLS from kind1's istiod")
	var changed []string
	for _, n := range []string{"kind2", "kind3"} {
		ca, err := s.readCACerts(ctx, n)
		if err != nil {
			return err
		}
		if ca.Cert.SerialNumber.Cmp(before[n]) != 0 {
			changed = append(changed, n)
		}
	}
	var err error
	if len(changed) > 0 {
		err = fmt.Errorf("joining changed the cacerts of %v", changed)
	}
	s.check("joining does not disturb members", err, "kind2 and kind3 serials unchanged")
	s.export(ctx)
	return nil
}

func (s *story) export(ctx context.Context) {
	s.say("meshtrust status --export %s", s.cfg.ExportDir)
	out, code := s.cli(ctx, "status", "--kubeconfig", s.owner.Kubeconfig, "--context", "kind1", "--context", "kind2", "--context", "kind3",
		"--export", s.cfg.ExportDir, "-o", "json")
	var err error
	if code != 0 {
		err = fmt.Errorf("status --export exited %d: %s", code, firstLine(errors.New(out)))
	}
	for _, n := range []string{"kind1", "kind2", "kind3"} {
		for _, f := range []string{pki.CACertKey, pki.CAKeyKey, pki.CertChainKey, pki.RootCertKey} {
			if _, statErr := os.Stat(filepath.Join(s.cfg.ExportDir, n, f)); statErr != nil {
				err = errors.Join(err, statErr)
			}
		}
	}
	s.check("cacerts exported as istiod mounts them", err, s.cfg.ExportDir+"/<cluster>/{"+strings.Join([]string{pki.CACertKey, pki.CAKeyKey, pki.CertChainKey, pki.RootCertKey}, ",")+"}")
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// compromised is the last step: kind1 is compromised, the Vault owner
// revokes its intermediate, and every other cluster's proxies (the verifier
// that checks CRLs as Envoy does, fed by each istiod's istio-ca-crl) refuse
// kind1's workloads, while kind2 and kind3 keep talking. It measures the
// time from the revoke command until the last cluster refuses.
func (s *story) compromised(ctx context.Context) error {
	const refusedCheck = "a compromised cluster's workloads are refused mesh-wide"
	victim, peers := "kind1", []string{"kind2", "kind3"}
	// kind1's workload holds a certificate its istiod signed before.
	stolen, err := s.serve(ctx, victim)
	if err != nil {
		return err
	}
	s.say("a cluster is compromised: meshtrust vault revoke --cluster %s (its intermediate serial %x); kind2's and kind3's proxies check CRLs as Envoy does",
		victim, stolen.Intermediate().SerialNumber)

	// Each peer's verifier is polled from the moment the command starts.
	type refusal struct {
		peer  string
		after time.Duration
		why   string
	}
	began := time.Now()
	refusals := make(chan refusal, len(peers))
	pollCtx, stopPolling := context.WithTimeout(ctx, 2*time.Minute)
	defer stopPolling()
	for _, peer := range peers {
		go func() {
			err := lab.WaitEvery(pollCtx, 2*time.Minute, 20*time.Millisecond, func(ctx context.Context) error {
				crls, err := istio.PublishedCRLs(ctx, s.lab.Cluster(peer).Clientset, namespace)
				if err != nil {
					return err
				}
				roots, err := istio.PublishedRoots(ctx, s.lab.Cluster(peer).Clientset, namespace)
				if err != nil {
					return err
				}
				if _, err := workload.Verify(stolen.Identity.Cert.Certificate, roots.Pool, crls, s.agents[victim].ID(), time.Now()); err != nil {
					refusals <- refusal{peer: peer, after: time.Since(began), why: err.Error()}
					return nil
				}
				return errors.New("still accepted")
			})
			if err != nil {
				refusals <- refusal{peer: peer, why: "never refused: " + err.Error()}
			}
		}()
	}
	out, code := s.cli(ctx, "vault", "revoke", "--cluster", victim, "--kubeconfig", s.owner.Kubeconfig,
		"--context", "kind1", "--context", "kind2", "--context", "kind3")
	s.indent(out)
	var errs []error
	if code != 0 {
		errs = append(errs, fmt.Errorf("meshtrust vault revoke exited %d", code))
	}
	var last time.Duration
	for range peers {
		r := <-refusals
		if r.after == 0 || !strings.Contains(r.why, "certificate revoked") {
			errs = append(errs, fmt.Errorf("%s: %s", r.peer, r.why))
			continue
		}
		s.say("  %s refuses %s's workload %s after the revoke command began: %s", r.peer, victim, r.after.Round(time.Millisecond), r.why)
		last = max(last, r.after)
	}
	detail := fmt.Sprintf("revoke command to the last cluster refusing: %s", last.Round(time.Millisecond))
	if len(errs) == 0 {
		s.say("  from the revoke command to the last cluster refusing %s: %s (the lab has no kubelet delay; in a cluster add its volume sync, about a minute)", victim, last.Round(time.Millisecond))
	}
	s.check(refusedCheck, errors.Join(errs...), detail)
	s.crossClusterMTLS(ctx, "kind2", "kind3", "the others keep talking after the revocation")
	s.status(ctx, "after the revocation: status names kind1's intermediate revoked", false, "kind1", "kind2", "kind3")
	return nil
}

// crlSummary names the issuers of the CRLs in the cluster's ca-crl.pem.
func (s *story) crlSummary(ctx context.Context, name string) string {
	secret, err := mesh.CACerts(ctx, s.lab.Cluster(name))
	if err != nil {
		return err.Error()
	}
	crls, err := pki.DecodeCRLs(secret.Data[pki.CRLKey], pki.MaxCRLBundlePEMSize)
	if err != nil {
		return err.Error()
	}
	var issuers []string
	for _, c := range crls {
		issuers = append(issuers, c.Issuer.CommonName)
	}
	return fmt.Sprintf("CRLs of %s", strings.Join(issuers, ", "))
}
