// Package federation is the multi-cluster identity-federation story, run
// for real on the lab: shared trust from one Vault root, cross-cluster mTLS
// with SPIFFE identities, a live rotation, and a cluster that joins late.
// `make demo` and the e2e test both run it; there is one implementation.
package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// rotationHandshakes is how many handshakes the live rotation needs on the
// old intermediate before it renews, and on the new one after.
const rotationHandshakes = 10

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
	if s.lab != nil {
		err = errors.Join(err, s.lab.Stop())
	}
	s.result.Took = time.Since(s.began)
	return &s.result, err
}

func (s *story) run(ctx context.Context) error {
	s.say("starting the lab: Vault, clusters kind1, kind2, kind3 (trust domains = names), cert-manager in each")
	l, err := lab.Start(ctx, lab.Options{Clusters: []string{"kind1", "kind2", "kind3"}, Dir: s.cfg.Dir, KeepDir: true, IssuanceBackoff: 10 * time.Second})
	if err != nil {
		return err
	}
	s.lab = l
	for _, tm := range l.Timings {
		s.say("  %-14s %-26s started in %s", tm.Component, tm.Address, tm.Took.Round(time.Millisecond))
	}
	s.say("  lab up in %s; logs: %s", time.Since(s.began).Round(time.Millisecond), strings.Join(l.LogPaths(), ", "))
	if servers, err := lab.Descendants(os.Getpid()); err == nil {
		const mib = 1 << 20
		s.say("  memory (RSS): %d server processes %d MiB; this process, with 3 in-process cert-managers, %d MiB",
			len(servers), lab.ResidentBytes(servers...)/mib, lab.ResidentBytes(os.Getpid())/mib)
	}
	if s.owner, err = mesh.NewCLI(l, "kind1"); err != nil {
		return err
	}

	s.say("before federation: each cluster runs its own self-signed CA (istiod's default)")
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
	s.status(ctx, "kind2", "kind3")
	s.crossClusterMTLS(ctx, cas["kind2"], cas["kind3"])
	s.isolation(cas["kind2"], cas["kind3"])
	if err := s.rotate(ctx); err != nil {
		return err
	}
	return s.lateJoin(ctx)
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
	s.say("  check %-48s %s: %s", name, verdict, c.Detail)
}

// cli runs `meshtrust args...` in-process, as the Vault owner would, and
// returns its standard output followed by its standard error.
func (s *story) cli(ctx context.Context, args ...string) (string, int) {
	out, errOut, code := s.owner.Run(ctx, args...)
	return out + errOut, code
}

// beforeFederation shows the problem: two clusters whose CAs are their
// own do not trust each other's workloads.
func (s *story) beforeFederation(ctx context.Context) {
	kind2, err2 := selfSignedCA("kind2 istiod self-signed CA")
	kind3, err3 := selfSignedCA("kind3 istiod self-signed CA")
	if err := errors.Join(err2, err3); err != nil {
		s.check("before: clusters do not trust each other", err, "")
		return
	}
	_, err := s.handshake(ctx, kind2, kind3)
	if err == nil {
		s.check("before: clusters do not trust each other", errors.New("a cross-cluster handshake succeeded without shared trust"), "")
		return
	}
	s.check("before: clusters do not trust each other", nil, "handshake refused: "+firstLine(err))
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
		s.say("  %s cacerts: intermediate serial %x, not after %s, name constraint %v", n, cas[n].Cert.SerialNumber, cas[n].Cert.NotAfter.UTC().Format(time.RFC3339), cas[n].Cert.PermittedURIDomains)
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
// exits 0 (everything healthy, the trust matrix all yes).
func (s *story) status(ctx context.Context, names ...string) {
	args := []string{"status", "--kubeconfig", s.owner.Kubeconfig}
	for _, n := range names {
		args = append(args, "--context", n)
	}
	s.say("meshtrust status %s", strings.Join(args[3:], " "))
	out, code := s.cli(ctx, args...)
	s.indent(out)
	var err error
	if code != 0 {
		err = fmt.Errorf("meshtrust status exited %d", code)
	}
	s.check(fmt.Sprintf("status healthy, %d×%d trust matrix all yes", len(names), len(names)), err, "exit 0")
}

// handshake signs a productpage workload with a and a reviews workload
// with b, then has productpage call reviews over mutual TLS 1.3.
func (s *story) handshake(ctx context.Context, a, b *workload.CA) (workload.Seen, error) {
	productpage := workload.SPIFFEID("kind2", "default", "bookinfo-productpage")
	reviews := workload.SPIFFEID("kind3", "default", "bookinfo-reviews")
	now := time.Now()
	client, err := workload.Issue(a, productpage, now, mesh.WorkloadTTL)
	if err != nil {
		return workload.Seen{}, err
	}
	server, err := workload.Issue(b, reviews, now, mesh.WorkloadTTL)
	if err != nil {
		return workload.Seen{}, err
	}
	return workload.Handshake(ctx,
		workload.Peer{Cert: server, Roots: b.Roots, Expect: productpage},
		workload.Peer{Cert: client, Roots: a.Roots, Expect: reviews})
}

func (s *story) crossClusterMTLS(ctx context.Context, kind2, kind3 *workload.CA) {
	s.say("cross-cluster mTLS: productpage (kind2) calls reviews (kind3), TLS 1.3, client certificates required")
	seen, err := s.handshake(ctx, kind2, kind3)
	if err == nil {
		s.say("  reviews (kind3) saw    %s", seen.ServerSaw)
		s.say("  productpage (kind2) saw %s", seen.ClientSaw)
	}
	s.check("cross-cluster mTLS with secure naming", err, "each side verified the other against its own root-cert.pem")
}

func (s *story) isolation(kind2, kind3 *workload.CA) {
	s.say("isolation: kind2's intermediate signs a certificate claiming a kind3 identity")
	forged := workload.SPIFFEID("kind3", "default", "bookinfo-reviews")
	cert, err := workload.Issue(kind2, forged, time.Now(), mesh.WorkloadTTL)
	if err != nil {
		s.check("name constraint stops a forged identity", err, "")
		return
	}
	_, err = workload.Verify(cert.Certificate, kind3.Roots, forged, time.Now())
	if err == nil {
		s.check("name constraint stops a forged identity", errors.New("kind3 accepted a kind3 identity signed by kind2's intermediate"), "")
		return
	}
	s.say("  rejected: %s", err)
	s.check("name constraint stops a forged identity", nil, "rejected by x509 name constraints")
}

// rotate renews kind2's intermediate while handshakes run, each loading the
// current cacerts from the API servers.
func (s *story) rotate(ctx context.Context) error {
	before, err := s.readCACerts(ctx, "kind2")
	if err != nil {
		return err
	}
	s.say("live rotation: handshakes loop while kind2's intermediate is renewed (serial %x)", before.Cert.SerialNumber)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	type tally struct{ ok, failed, afterChange int }
	var counts tally
	var firstFailure error
	var newSerial *big.Int
	var okBefore atomic.Int64
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for loopCtx.Err() == nil {
			kind2, err := s.readCACerts(loopCtx, "kind2")
			var kind3 *workload.CA
			if err == nil {
				kind3, err = s.readCACerts(loopCtx, "kind3")
			}
			if err == nil {
				_, err = s.handshake(loopCtx, kind2, kind3)
			}
			if loopCtx.Err() != nil {
				return
			}
			if err != nil {
				counts.failed++
				if firstFailure == nil {
					firstFailure = err
				}
				continue
			}
			counts.ok++
			okBefore.Add(1)
			if kind2.Cert.SerialNumber.Cmp(before.Cert.SerialNumber) != 0 {
				newSerial = kind2.Cert.SerialNumber
				counts.afterChange++
				if counts.afterChange >= rotationHandshakes {
					return
				}
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
		if okBefore.Load() < rotationHandshakes {
			return fmt.Errorf("%d handshakes so far", okBefore.Load())
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mesh.TriggerRenewal(ctx, s.lab.Cluster("kind2"), 30*time.Second, "the meshtrust demo"); err != nil {
		return err
	}
	select {
	case <-loopDone:
	case <-time.After(2 * time.Minute):
		stopLoop()
		<-loopDone
	}
	var checkErr error
	switch {
	case newSerial == nil:
		checkErr = fmt.Errorf("kind2's cacerts never changed (%d handshakes, %d failed)", counts.ok+counts.failed, counts.failed)
	case counts.failed > 0:
		checkErr = fmt.Errorf("%d of %d handshakes failed, first: %v", counts.failed, counts.ok+counts.failed, firstFailure)
	}
	if newSerial != nil {
		s.say("  kind2 cacerts serial %x -> %x", before.Cert.SerialNumber, newSerial)
	}
	s.check("live rotation, zero failed handshakes", checkErr,
		fmt.Sprintf("%d handshakes, %d failed, %d on the new intermediate", counts.ok+counts.failed, counts.failed, counts.afterChange))
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
	s.status(ctx, "kind1", "kind2", "kind3")
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

// selfSignedCA stands for the CA istiod generates when no cacerts exists.
func selfSignedCA(name string) (*workload.CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"cluster.local"}, CommonName: name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &workload.CA{Cert: cert, Key: key, Chain: []*x509.Certificate{cert}, Roots: roots}, nil
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
