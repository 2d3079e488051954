package rotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// Names the enrol command puts in the YAML it prints, besides those in
// package mesh.
const (
	sourceSecret  = "meshtrust-istio-ca"
	clusterIssuer = "meshtrust-vault"
	pkiMount      = "pki"
	// waitLimit bounds every single wait. It is far above what a step needs
	// so that a loaded 2-core CI machine does not make the test flaky.
	waitLimit = 2 * time.Minute
)

// env is one run: the lab (an istiod in each cluster), meshtrust's
// controllers in each cluster, the Vault owner's CLI, and the one workload
// of each cluster, whose certificates come from its istiod.
type env struct {
	t           testing.TB
	ctx         context.Context
	lab         *lab.Lab
	vault       *vaultapi.Client
	owner       *mesh.CLI
	kubeconfig  string
	began       time.Time
	logger      io.Writer
	agents      map[string]*istio.Agent
	controllers map[string]*mesh.Controllers

	mu        sync.Mutex
	roots     map[string]string            // SHA-256 fingerprint -> "root-1", "root-2"
	rootCerts map[string]*x509.Certificate // "root-1" -> its certificate
}

func newEnv(t testing.TB, clusters ...string) *env {
	t.Helper()
	return newEnvWith(t, lab.Options{Clusters: clusters, IssuanceBackoff: 10 * time.Second, Istiod: true}, 10*time.Minute)
}

// newEnvWith is newEnv on a lab of opts, for up to limit; clusters
// without an istiod get no workload.
func newEnvWith(t testing.TB, opts lab.Options, limit time.Duration) *env {
	t.Helper()
	began := time.Now()
	clusters := opts.Clusters
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	l := lab.New(t, opts)
	e := &env{t: t, ctx: ctx, lab: l, began: began, roots: map[string]string{}, rootCerts: map[string]*x509.Certificate{},
		agents: map[string]*istio.Agent{}, controllers: map[string]*mesh.Controllers{}}
	e.logf("lab up: Vault %s, clusters %s, an istiod in each", l.Vault.Addr, strings.Join(clusters, ", "))
	for _, n := range clusters {
		if l.Cluster(n).Istiod == nil {
			continue
		}
		a, err := mesh.Workload(l.Cluster(n), workloadNamespace, serviceAccountOf(n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		e.agents[n] = a
	}

	owner, err := mesh.NewCLI(l, clusters[0])
	if err != nil {
		t.Fatal(err)
	}
	e.owner, e.kubeconfig = owner, owner.Kubeconfig
	vc, err := l.Vault.Client()
	if err != nil {
		t.Fatal(err)
	}
	e.vault = vc

	logPath := filepath.Join(l.Dir, "meshtrust-controllers.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logFile{f: f}
	e.logger = logs
	// Client-go reflectors log through controller-runtime's global logger;
	// unset, it prints a warning with a stack trace into the test output.
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	t.Cleanup(func() {
		logs.Close()
		if t.Failed() {
			t.Logf("meshtrust controller logs: %s", logPath)
		}
	})
	return e
}

// logFile is the controllers' log file. Writes after Close are dropped:
// the lab's cert-manager still logs through controller-runtime's global
// logger while it stops.
type logFile struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	return l.f.Write(p)
}

func (l *logFile) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.f.Close()
}

// logf prints one step with the time since the test began.
func (e *env) logf(format string, args ...any) {
	e.t.Helper()
	e.t.Logf("[%5.1fs] %s", time.Since(e.began).Seconds(), fmt.Sprintf(format, args...))
}

// cli runs `meshtrust args...` in-process, as the Vault owner would.
func (e *env) cli(args ...string) (stdout, stderr string, code int) {
	return e.owner.Run(e.ctx, args...)
}

// mustCLI runs the CLI, fails the test unless it exits 0, and returns what
// it printed on standard output.
func (e *env) mustCLI(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.cli(args...)
	if code != 0 {
		e.t.Fatalf("meshtrust %s exited %d:\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// registerRoot reads a root issuer's certificate from Vault and names it for
// the logs.
func (e *env) registerRoot(ref, name string) *x509.Certificate {
	e.t.Helper()
	s, err := e.vault.Logical().ReadWithContext(e.ctx, pkiMount+"/issuer/"+ref+"/json")
	if err != nil || s == nil {
		e.t.Fatalf("reading Vault issuer %s: %v", ref, err)
	}
	pemText, _ := s.Data["certificate"].(string)
	certs, err := pki.DecodeCertificates([]byte(pemText), pki.MaxRootBundlePEMSize)
	if err != nil || len(certs) != 1 || !pki.IsSelfSigned(certs[0]) {
		e.t.Fatalf("Vault issuer %s is not one self-signed certificate (%d certificates, %v)", ref, len(certs), err)
	}
	e.mu.Lock()
	e.roots[pki.Fingerprint(certs[0])] = name
	e.rootCerts[name] = certs[0]
	e.mu.Unlock()
	e.logf("  %s = Vault issuer %s, CN=%q, sha256 %s…", name, ref, certs[0].Subject.CommonName, pki.Fingerprint(certs[0])[:16])
	return certs[0]
}

// name is the log name of a root ("root-1"), or "unknown:<fingerprint>".
func (e *env) name(c *x509.Certificate) string {
	fp := pki.Fingerprint(c)
	e.mu.Lock()
	defer e.mu.Unlock()
	if n, ok := e.roots[fp]; ok {
		return n
	}
	return "unknown:" + fp[:12]
}

// crlRoots names the known roots that crls hold a CRL of, sorted.
func (e *env) crlRoots(crls []*x509.RevocationList) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name, c := range e.rootCerts {
		if slices.ContainsFunc(crls, func(crl *x509.RevocationList) bool { return pki.CRLIssuedBy(crl, c) }) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (e *env) names(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = e.name(c)
	}
	return out
}

// vaultIssuers lists the names of the PKI mount's issuers.
func (e *env) vaultIssuers() []string {
	e.t.Helper()
	s, err := e.vault.Logical().ListWithContext(e.ctx, pkiMount+"/issuers")
	if err != nil || s == nil {
		e.t.Fatalf("listing Vault issuers: %v", err)
	}
	info, _ := s.Data["key_info"].(map[string]any)
	var names []string
	for _, v := range info {
		if m, ok := v.(map[string]any); ok {
			n, _ := m["issuer_name"].(string)
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// vaultDefaultIssuer is the ID of the PKI mount's default issuer.
func (e *env) vaultDefaultIssuer() string {
	e.t.Helper()
	s, err := e.vault.Logical().ReadWithContext(e.ctx, pkiMount+"/config/issuers")
	if err != nil || s == nil {
		e.t.Fatalf("reading Vault's default issuer: %v", err)
	}
	id, _ := s.Data["default"].(string)
	return id
}

// vaultIssuerID is the ID of the issuer named ref.
func (e *env) vaultIssuerID(ref string) string {
	e.t.Helper()
	s, err := e.vault.Logical().ReadWithContext(e.ctx, pkiMount+"/issuer/"+ref)
	if err != nil || s == nil {
		e.t.Fatalf("reading Vault issuer %s: %v", ref, err)
	}
	id, _ := s.Data["issuer_id"].(string)
	return id
}

// enrol runs `meshtrust vault enroll` for the cluster with the given issuer
// ref and applies the YAML it prints, as `kubectl apply --server-side`
// would.
func (e *env) enrol(name, issuerRef string) {
	e.t.Helper()
	c := e.lab.Cluster(name)
	applied, err := e.owner.Enrol(e.ctx, c, "--issuer-ref", issuerRef)
	if err != nil {
		e.t.Fatal(err)
	}
	e.logf("  meshtrust vault enroll --cluster %s --issuer-ref %s | kubectl apply --server-side: %s", name, issuerRef, strings.Join(applied, ", "))
}

// startControllers runs meshtrust's issuer and syncer for the cluster in
// this process until the test ends or stopControllers.
func (e *env) startControllers(name string) {
	e.t.Helper()
	opts := mesh.ControllerOptions(zap.New(zap.WriteTo(e.logger), zap.UseDevMode(true)).WithValues("cluster", name))
	// --issuer-roots-cache-ttl: a root added or retired in Vault reaches
	// ca.crt at the first issuance a second later, not a minute later.
	opts.Issuer.RootsCacheTTL = time.Second
	m, err := mesh.StartControllers(e.ctx, e.lab.Cluster(name), opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.controllers[name] = m
	e.t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			e.t.Error(err)
		}
	})
}

// stopControllers stops meshtrust's controllers for the cluster, as an
// operator scales the controller to zero.
func (e *env) stopControllers(name string) {
	e.t.Helper()
	if err := e.controllers[name].Stop(); err != nil {
		e.t.Fatal(err)
	}
}

// annotateCertificate sets one annotation on the cluster's intermediate
// Certificate.
func (e *env) annotateCertificate(name, key, value string) {
	e.t.Helper()
	c := e.lab.Cluster(name)
	crt, err := mesh.Intermediate(e.ctx, c)
	if err != nil {
		e.t.Fatal(err)
	}
	patch := client.MergeFrom(crt.DeepCopy())
	metav1.SetMetaDataAnnotation(&crt.ObjectMeta, key, value)
	if err := c.Client.Patch(e.ctx, crt, patch); err != nil {
		e.t.Fatalf("annotating Certificate %s/%s in %s: %v", mesh.IstioNamespace, mesh.IntermediateCertificate, name, err)
	}
}

// clusterState is one cluster's cacerts as istiod would load it.
type clusterState struct {
	Name string
	CA   *workload.CA
	// Bundle is root-cert.pem in file order, and BundlePEM its bytes.
	Bundle    []*x509.Certificate
	BundlePEM []byte
	// ChainRoot is the root at the top of cert-chain.pem: the root the
	// intermediate was signed by.
	ChainRoot   *x509.Certificate
	Serial      string
	Annotations map[string]string
	// CRLs are ca-crl.pem's.
	CRLs []*x509.RevocationList
}

func (e *env) readState(ctx context.Context, name string) (*clusterState, error) {
	sec, err := mesh.CACerts(ctx, e.lab.Cluster(name))
	if err != nil {
		return nil, fmt.Errorf("%s: reading cacerts: %w", name, err)
	}
	ca, err := workload.LoadCA(sec.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	bundle, err := pki.DecodeCertificates(sec.Data[pki.RootCertKey], pki.MaxRootBundlePEMSize)
	if err != nil {
		return nil, fmt.Errorf("%s: root-cert.pem: %w", name, err)
	}
	top := ca.Chain[len(ca.Chain)-1]
	if !pki.IsSelfSigned(top) {
		return nil, fmt.Errorf("%s: cert-chain.pem does not end with a root", name)
	}
	var crls []*x509.RevocationList
	if len(sec.Data[pki.CRLKey]) > 0 {
		if crls, err = pki.DecodeCRLs(sec.Data[pki.CRLKey], pki.MaxCRLBundlePEMSize); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, pki.CRLKey, err)
		}
	}
	return &clusterState{Name: name, CA: ca, Bundle: bundle, BundlePEM: sec.Data[pki.RootCertKey], ChainRoot: top,
		Serial: ca.Cert.SerialNumber.Text(16), Annotations: sec.Annotations, CRLs: crls}, nil
}

func (e *env) mustState(name string) *clusterState {
	e.t.Helper()
	s, err := e.readState(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// describe is a one-line view of a cluster's cacerts for the logs.
func (e *env) describe(s *clusterState) string {
	return fmt.Sprintf("%s: intermediate %.8s… signed by %s, root-cert.pem %v", s.Name, s.Serial, e.name(s.ChainRoot), e.names(s.Bundle))
}

// waitState polls the cluster's cacerts until check accepts it.
func (e *env) waitState(name string, check func(*clusterState) error) *clusterState {
	e.t.Helper()
	var got *clusterState
	err := lab.WaitFor(e.ctx, waitLimit, func(ctx context.Context) error {
		s, err := e.readState(ctx, name)
		if err != nil {
			return err
		}
		if err := check(s); err != nil {
			return fmt.Errorf("%s: %w", e.describe(s), err)
		}
		got = s
		return nil
	})
	if err != nil {
		e.t.Fatalf("waiting for %s's cacerts: %v", name, err)
	}
	return got
}

// sourceBundle is what cert-manager stored for the Certificate: the
// intermediate (first of tls.crt) and ca.crt.
type sourceBundle struct {
	Leaf  *x509.Certificate
	Roots []*x509.Certificate
}

func (e *env) readSource(ctx context.Context, name string) (*sourceBundle, error) {
	var sec corev1.Secret
	if err := e.lab.Cluster(name).Client.Get(ctx, client.ObjectKey{Namespace: mesh.IstioNamespace, Name: sourceSecret}, &sec); err != nil {
		return nil, err
	}
	chain, err := pki.DecodeCertificates(sec.Data[pki.TLSCertKey], pki.MaxChainPEMSize)
	if err != nil || len(chain) == 0 {
		return nil, fmt.Errorf("%s: tls.crt holds no certificate (%v)", sourceSecret, err)
	}
	roots, err := pki.DecodeCertificates(sec.Data[pki.CACertBundleKey], pki.MaxRootBundlePEMSize)
	if err != nil {
		return nil, fmt.Errorf("%s: ca.crt: %w", sourceSecret, err)
	}
	return &sourceBundle{Leaf: chain[0], Roots: roots}, nil
}

// renew makes cert-manager issue a new revision of the cluster's
// intermediate (as `cmctl renew` does), waits until the syncer has put it
// into cacerts, and then until the cluster's istiod signs with it and
// publishes its root-cert.pem. accept judges the new ca.crt; when it
// refuses, the renewal is repeated.
//
// Why repeat: the issuer caches the list of Vault's roots for
// --issuer-roots-cache-ttl (a second here), so a renewal right after a root
// was added or removed in Vault may still carry the old list; the next one,
// past the cache's lifetime, carries the new list.
func (e *env) renew(name string, accept func(*sourceBundle) error) *clusterState {
	e.t.Helper()
	c := e.lab.Cluster(name)
	// Each renewal takes a fraction of a second, so this many outlast the
	// one-second cache many times over, yet not a one-minute one.
	const attempts = 30
	mark := c.Istiod.Mark()
	for attempt := 1; ; attempt++ {
		before, err := e.readSource(e.ctx, name)
		if err != nil {
			e.t.Fatal(err)
		}
		rev := e.revision(name)
		if err := mesh.TriggerRenewal(e.ctx, c, waitLimit, "the root-rotation test"); err != nil {
			e.t.Fatalf("renewing %s's intermediate: %v", name, err)
		}
		var src *sourceBundle
		err = lab.WaitFor(e.ctx, waitLimit, func(ctx context.Context) error {
			crt, err := mesh.Intermediate(ctx, c)
			if err != nil {
				return err
			}
			switch {
			case crt.Status.Revision == nil || *crt.Status.Revision <= rev:
				return fmt.Errorf("certificate still at revision %d", rev)
			case apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue}):
				return errors.New("certificate still issuing")
			case !apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}):
				return errors.New("certificate not Ready")
			}
			s, err := e.readSource(ctx, name)
			if err != nil {
				return err
			}
			if s.Leaf.Equal(before.Leaf) {
				return errors.New("the Secret still holds the previous intermediate")
			}
			src = s
			return nil
		})
		if err != nil {
			e.t.Fatalf("waiting for %s's new intermediate: %v", name, err)
		}
		if err := accept(src); err != nil {
			if attempt == attempts {
				e.t.Fatalf("%s: after %d renewals ca.crt is still %v: %v", name, attempts, e.names(src.Roots), err)
			}
			e.logf("  %s: renewal %d gave ca.crt %v (%v): the issuer's cached root list predates the change in Vault; renewing again", name, attempt, e.names(src.Roots), err)
			continue
		}
		serial := src.Leaf.SerialNumber.Text(16)
		got := e.waitState(name, func(s *clusterState) error {
			if s.Serial != serial {
				return fmt.Errorf("syncer has not written serial %s yet", serial)
			}
			return nil
		})
		e.logf("  renewed %s: ca.crt %v -> %s", name, e.names(src.Roots), e.describe(got))
		e.waitIstiod(name, mark)
		return got
	}
}

// waitIstiod waits until the cluster's istiod has taken its current
// cacerts (mesh.WaitIstiodTakes) and checks that istiod refused none of the
// versions it saw after mark: a refusal fails the test quoting istiod's log
// line, istiod's exit naming its log file.
func (e *env) waitIstiod(name string, mark lab.LogMark) *mesh.Served {
	e.t.Helper()
	c := e.lab.Cluster(name)
	r, served, err := mesh.WaitIstiodTakes(e.ctx, c, e.agents[name], workloadNamespace)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	reactions, err := c.Istiod.Reactions(mark)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, rr := range reactions {
		if rr.Refused {
			e.t.Fatalf("%s: %v", name, &lab.CACertsRefusedError{Cluster: name, Line: rr.Verdict, LogPath: c.Istiod.LogPath})
		}
	}
	took := "loaded at start"
	if !r.Began.IsZero() {
		took = r.Verdict.Message()
	}
	e.logf("  %s's istiod took it (%s): signs with intermediate %.8s…, publishes %v in %s",
		name, took, served.Intermediate().SerialNumber.Text(16), e.names(served.Roots.Certs), istio.RootCertConfigMap)
	return served
}

func (e *env) revision(name string) int {
	e.t.Helper()
	crt, err := mesh.Intermediate(e.ctx, e.lab.Cluster(name))
	if err != nil {
		e.t.Fatal(err)
	}
	return decision.Revision(crt)
}

// call has a workload holding clientCert call one holding serverCert over
// mutual TLS 1.3; each side verifies the other as its proxy would, against
// what its own cluster's istiod published (the bundle, and the CRLs as
// Envoy checks them), and checks the peer's SPIFFE ID.
func call(ctx context.Context, clientCert tls.Certificate, clientID string, clientTrust *istio.ProxyTrust,
	serverCert tls.Certificate, serverID string, serverTrust *istio.ProxyTrust) error {
	_, err := workload.Handshake(ctx,
		workload.Peer{Cert: serverCert, Roots: serverTrust.Roots.Pool, CRLs: serverTrust.CRLs, Expect: clientID},
		workload.Peer{Cert: clientCert, Roots: clientTrust.Roots.Pool, CRLs: clientTrust.CRLs, Expect: serverID})
	return err
}

// workloadNamespace holds each cluster's one workload.
const workloadNamespace = "default"

// serviceAccountOf is the one workload each cluster runs in this test.
func serviceAccountOf(cluster string) string {
	if cluster == "kind2" {
		return "bookinfo-productpage"
	}
	return "bookinfo-reviews"
}

// workloadOf is that workload's SPIFFE ID.
func workloadOf(cluster string) string {
	return istio.SPIFFEID(cluster, workloadNamespace, serviceAccountOf(cluster))
}

// serve has the cluster's workload get a certificate from its istiod, with
// the bundle istiod publishes in its namespace.
func (e *env) serve(ctx context.Context, cluster string) (*mesh.Served, error) {
	return mesh.Serve(ctx, e.lab.Cluster(cluster), e.agents[cluster], workloadNamespace)
}

// servedCall has from's workload call to's, both with what their istiods
// just handed out.
func servedCall(ctx context.Context, from, to string, a, b *mesh.Served) error {
	return call(ctx, a.Identity.Cert, workloadOf(from), &istio.ProxyTrust{Roots: a.Roots, CRLs: a.CRLs},
		b.Identity.Cert, workloadOf(to), &istio.ProxyTrust{Roots: b.Roots, CRLs: b.CRLs})
}

// chainRoot is the root at the end of the chain istiod returned (its
// cert-chain.pem ends with the root that signed the intermediate).
func chainRoot(s *mesh.Served) *x509.Certificate {
	if n := len(s.Identity.Intermediates); n > 0 {
		return s.Identity.Intermediates[n-1]
	}
	return s.Identity.Cert.Leaf
}

// stateKey says, from what each cluster's istiod hands out, which root its
// intermediate chains to and which roots it publishes, in order.
type stateKey struct {
	Chain2, Chain3 string
	Trust2, Trust3 string
}

func (k stateKey) String() string {
	return fmt.Sprintf("kind2 signed by %s, trusts %s | kind3 signed by %s, trusts %s", k.Chain2, k.Trust2, k.Chain3, k.Trust3)
}

func (e *env) key(k2, k3 *mesh.Served) stateKey {
	return stateKey{
		Chain2: e.name(chainRoot(k2)), Chain3: e.name(chainRoot(k3)),
		Trust2: strings.Join(e.names(k2.Roots.Certs), "+"), Trust3: strings.Join(e.names(k3.Roots.Certs), "+"),
	}
}

// traffic is the handshake loop between kind2 and kind3.
type traffic struct {
	mu sync.Mutex
	tally
	byState map[stateKey]int
	order   []stateKey
	// versions holds, per cluster, every distinct root-cert.pem the loop
	// saw in cacerts, in order. While a cluster's cacerts holds a fixture
	// written around the syncer, reads of it are left out.
	versions map[string][][]byte
	fixtures map[string]fixtureWindow

	cancel context.CancelFunc
	done   chan struct{}
}

// startTraffic runs handshakes in both directions, kind2 -> kind3 and kind3
// -> kind2, until stop. Each round gets fresh workload certificates from
// both clusters' istiods and reads the bundles they publish, as workloads
// that just rotated their certificates.
func (e *env) startTraffic() *traffic {
	ctx, cancel := context.WithCancel(e.ctx)
	tr := &traffic{byState: map[stateKey]int{}, versions: map[string][][]byte{}, fixtures: map[string]fixtureWindow{},
		cancel: cancel, done: make(chan struct{})}
	// A short pause between rounds leaves the two cores to the
	// controllers and API servers; every round still sees the state
	// current at its start.
	go loop(ctx, tr.done, 40*time.Millisecond, func(ctx context.Context) { e.round(ctx, tr) })
	e.t.Cleanup(tr.stop)
	return tr
}

// loop runs round every interval until ctx ends, then closes done.
func loop(ctx context.Context, done chan struct{}, interval time.Duration, round func(context.Context)) {
	defer close(done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (tr *traffic) stop() {
	tr.cancel()
	<-tr.done
}

func (e *env) round(ctx context.Context, tr *traffic) {
	// What the syncer wrote, for the cross-check of root-cert.pem changes.
	readAt := time.Now()
	k2, err := e.readState(ctx, "kind2")
	var k3 *clusterState
	if err == nil {
		k3, err = e.readState(ctx, "kind3")
	}
	if ctx.Err() != nil {
		return // stopping; not a failure of the mesh
	}
	if err != nil {
		tr.record(stateKey{}, fmt.Errorf("loading cacerts: %w", err))
		return
	}
	tr.see("kind2", k2.BundlePEM, readAt)
	tr.see("kind3", k3.BundlePEM, readAt)
	served := map[string]*mesh.Served{}
	for _, n := range []string{"kind2", "kind3"} {
		s, err := e.serve(ctx, n)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			tr.record(stateKey{}, fmt.Errorf("certificate request: %w", err))
			return
		}
		served[n] = s
	}
	key := e.key(served["kind2"], served["kind3"])
	for _, pair := range [][2]string{{"kind2", "kind3"}, {"kind3", "kind2"}} {
		err := servedCall(ctx, pair[0], pair[1], served[pair[0]], served[pair[1]])
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("%s -> %s in state [%s]: %w", pair[0], pair[1], key, err)
		}
		tr.record(key, err)
	}
}

// see records bundle, read from cluster's cacerts by a read that began at
// readAt.
func (tr *traffic) see(cluster string, bundle []byte, readAt time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if f, ok := tr.fixtures[cluster]; ok && bytes.Equal(f.bundle, bundle) && (f.until.IsZero() || readAt.Before(f.until)) {
		return
	}
	v := tr.versions[cluster]
	if len(v) == 0 || !bytes.Equal(v[len(v)-1], bundle) {
		tr.versions[cluster] = append(v, bytes.Clone(bundle))
	}
}

// fixtureWindow is a root-cert.pem written around the syncer, and when it
// was replaced again (zero while it is in place).
type fixtureWindow struct {
	bundle []byte
	until  time.Time
}

// fixture tells the loop that cluster's cacerts is about to hold bundle,
// written around the syncer: reads of it are not the syncer's.
func (tr *traffic) fixture(cluster string, bundle []byte) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.fixtures[cluster] = fixtureWindow{bundle: bytes.Clone(bundle)}
}

// fixtureGone tells the loop that cluster's cacerts no longer holds its
// fixture: reads that begin from now on cannot see it.
func (tr *traffic) fixtureGone(cluster string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	f := tr.fixtures[cluster]
	f.until = time.Now()
	tr.fixtures[cluster] = f
}

// tally counts handshakes and keeps the first failures.
type tally struct {
	ok, failed int
	failures   []string
}

// add counts err's outcome and reports whether it was a success.
func (t *tally) add(err error) bool {
	if err != nil {
		t.failed++
		if len(t.failures) < 5 {
			t.failures = append(t.failures, err.Error())
		}
		return false
	}
	t.ok++
	return true
}

func (tr *traffic) record(key stateKey, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.add(err) {
		return
	}
	if _, seen := tr.byState[key]; !seen {
		tr.order = append(tr.order, key)
	}
	tr.byState[key]++
}

// waitFor waits until at least n handshakes succeeded in states that match.
func (e *env) waitTraffic(tr *traffic, what string, n int, match func(stateKey) bool) {
	e.t.Helper()
	var got int
	err := lab.WaitFor(e.ctx, waitLimit, func(context.Context) error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		got = 0
		for k, c := range tr.byState {
			if match(k) {
				got += c
			}
		}
		if got < n {
			return fmt.Errorf("%d of %d handshakes so far (%d failed overall; first failures: %v)", got, n, tr.failed, tr.failures)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("waiting for handshakes %s: %v", what, err)
	}
	e.logf("  traffic: %d handshakes succeeded %s", got, what)
}

// statusReport is the part of `meshtrust status -o json` the test checks.
type statusReport struct {
	Healthy  bool     `json:"healthy"`
	Warnings []string `json:"warnings"`
	Clusters []struct {
		Context          string   `json:"context"`
		RootFingerprints []string `json:"rootFingerprints"`
		Problems         []string `json:"problems"`
	} `json:"clusters"`
}

// status runs `meshtrust status` for kind2 and kind3 and requires it to be
// healthy (exit 0, shared trust, no warning).
func (e *env) status(extra ...string) statusReport {
	e.t.Helper()
	args := append([]string{"status", "--kubeconfig", e.kubeconfig, "--context", "kind2", "--context", "kind3"}, extra...)
	out, errOut, code := e.cli(append(args, "-o", "json")...)
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("meshtrust status -o json (exit %d) printed no report: %v\n%s%s", code, err, out, errOut)
	}
	if code != 0 || !rep.Healthy {
		table, _, _ := e.cli(args...)
		e.t.Fatalf("meshtrust status is not healthy (exit %d):\n%s%s", code, table, errOut)
	}
	return rep
}
