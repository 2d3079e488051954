package syncer_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer"
)

// running is one in-process syncer manager.
type running struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the manager has returned
	err    error
	reg    *prometheus.Registry
}

// stop cancels the manager and waits for it to return, as a process kill
// followed by the next process start would.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Logf("manager returned: %v", r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("manager did not stop within a minute")
	}
}

// syncs is how many reconciles this manager finished, any result.
func (r *running) syncs(t *testing.T) float64 {
	t.Helper()
	n, err := mesh.CounterTotal(r.reg, "meshtrust_cacerts_sync_total")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func metricValue(mfs []*dto.MetricFamily, name string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// startSyncer runs the syncer the way main wires it, watching only the given
// namespaces so that tests running their own managers do not interfere.
func startSyncer(t *testing.T, c *lab.Cluster, clk clock.Clock, namespaces []string, wrap func(client.Client, context.CancelFunc) client.Client) *running {
	t.Helper()
	opts := syncer.DefaultOptions()
	opts.Clock = clk
	return startSyncerWith(t, c, opts, namespaces, wrap)
}

// startSyncerWith is startSyncer with the syncer's options given.
func startSyncerWith(t *testing.T, c *lab.Cluster, opts syncer.Options, namespaces []string, wrap func(client.Client, context.CancelFunc) client.Client) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts.TargetNamespaces = []string{"*"}
	reg := prometheus.NewRegistry()
	opts.MetricsRegistry = reg
	defNS := map[string]cache.Config{}
	for _, ns := range namespaces {
		defNS[ns] = cache.Config{}
	}
	logFile, err := os.OpenFile(filepath.Join(t.TempDir(), "syncer.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	mopts := ctrl.Options{
		Scheme:                 c.Scheme,
		Logger:                 zap.New(zap.WriteTo(logFile)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: syncer.CacheOptions(opts), DefaultNamespaces: defNS},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if wrap != nil {
		mopts.NewClient = func(cfg *rest.Config, o client.Options) (client.Client, error) {
			cl, err := client.New(cfg, o)
			if err != nil {
				return nil, err
			}
			return wrap(cl, cancel), nil
		}
	}
	mgr, err := ctrl.NewManager(c.Config, mopts)
	if err != nil {
		t.Fatal(err)
	}
	if err := syncer.Setup(ctx, mgr, opts); err != nil {
		t.Fatal(err)
	}
	r := &running{cancel: cancel, done: make(chan struct{}), reg: reg}
	go func() { r.err = mgr.Start(ctx); logFile.Close(); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// vaultSource does what an operator does to make a cluster's intermediates
// come from Vault: `meshtrust vault bootstrap`, `meshtrust vault enroll`, the
// printed YAML applied, and meshtrust's issuer running (its syncer does not:
// each test runs its own). It returns the enrolled Certificate's spec, which
// intermediate copies into each test's namespace.
func vaultSource(ctx context.Context, t *testing.T, l *lab.Lab, c *lab.Cluster) cmapi.CertificateSpec {
	t.Helper()
	cli, err := mesh.NewCLI(l, c.Name)
	must(t, err)
	if out, errOut, code := cli.Run(ctx, "vault", "bootstrap"); code != 0 {
		t.Fatalf("meshtrust vault bootstrap: exit %d: %s", code, out+errOut)
	}
	_, err = cli.Enrol(ctx, c)
	must(t, err)

	logFile, err := os.Create(filepath.Join(t.TempDir(), "issuer.log"))
	must(t, err)
	opts := mesh.ControllerOptions(zap.New(zap.WriteTo(logFile)))
	opts.EnableSyncer = false
	issuer, err := mesh.StartControllers(ctx, c, opts)
	must(t, err)
	t.Cleanup(func() {
		if err := issuer.Stop(); err != nil {
			t.Errorf("meshtrust issuer: %v", err)
		}
	})
	crt, err := mesh.Intermediate(ctx, c)
	must(t, err)
	return crt.Spec
}

// intermediate creates, in ns, the Certificate "istio-ca" for an
// intermediate signed through the VaultClusterIssuer, opted in to the syncer
// and carrying the annotations ann. Its Secret is "istio-ca-tls".
func intermediate(ctx context.Context, t *testing.T, c *lab.Cluster, spec cmapi.CertificateSpec, ns string, ann map[string]string) {
	t.Helper()
	must(t, c.EnsureNamespace(ctx, ns))
	a := map[string]string{syncer.AnnotationOptIn: "true"}
	maps.Copy(a, ann)
	crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio-ca", Annotations: a}, Spec: *spec.DeepCopy()}
	crt.Spec.SecretName = "istio-ca-tls"
	must(t, c.Client.Create(ctx, crt))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func getSecret(ctx context.Context, c *lab.Cluster, ns, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	return s, c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
}

func getCert(ctx context.Context, t *testing.T, c *lab.Cluster, ns string) *cmapi.Certificate {
	t.Helper()
	crt, err := fetchCert(ctx, c, ns)
	must(t, err)
	return crt
}

// fetchCert reads ns/istio-ca for polling conditions, which must return
// errors rather than fail the test mid-poll.
func fetchCert(ctx context.Context, c *lab.Cluster, ns string) (*cmapi.Certificate, error) {
	return mesh.Certificate(ctx, c, ns, "istio-ca")
}

// waitCACertsFromSource waits until cacerts in ns holds the source Secret's
// current intermediate and returns both.
func waitCACertsFromSource(t *testing.T, c *lab.Cluster, ns string, timeout time.Duration) (*corev1.Secret, *corev1.Secret) {
	t.Helper()
	var cacerts, src *corev1.Secret
	lab.Eventually(t, timeout, "cacerts to carry the source's intermediate", func(ctx context.Context) error {
		var err error
		if src, err = getSecret(ctx, c, ns, "istio-ca-tls"); err != nil {
			return err
		}
		if cacerts, err = getSecret(ctx, c, ns, "cacerts"); err != nil {
			return err
		}
		first, err := pki.DecodeCertificates(src.Data["tls.crt"], pki.MaxChainPEMSize)
		if err != nil {
			return err
		}
		if want := first[0].SerialNumber.Text(16); cacerts.Annotations[syncer.AnnotationSerial] != want {
			return fmt.Errorf("cacerts serial %q, source serial %q", cacerts.Annotations[syncer.AnnotationSerial], want)
		}
		return nil
	})
	return cacerts, src
}

// assertWhole checks that cacerts is one complete, self-consistent bundle
// that istiod would load: never a mix of two revisions, and a ca-crl.pem,
// once the VaultClusterIssuer hands it CRLs, with a CRL of every CA of the
// chain (istiod refuses one without).
func assertWhole(t *testing.T, s *corev1.Secret, now time.Time) *pki.Bundle {
	t.Helper()
	_, hasCRL := s.Data[pki.CRLKey]
	if want := 4 + boolInt(hasCRL); len(s.Data) != want {
		t.Fatalf("cacerts has %d keys, want %d", len(s.Data), want)
	}
	b, err := pki.ParseIstio(s.Data)
	if err != nil {
		t.Fatalf("cacerts does not parse: %v", err)
	}
	if err := pki.Verify(b, now, 24*time.Hour); err != nil {
		t.Fatalf("cacerts does not verify: %v", err)
	}
	if got := b.Cert.SerialNumber.Text(16); got != s.Annotations[syncer.AnnotationSerial] {
		t.Fatalf("ca-cert.pem serial %s, annotation %s: mixed bundle", got, s.Annotations[syncer.AnnotationSerial])
	}
	chain, _ := pki.DecodeCertificates(s.Data[pki.CertChainKey], pki.MaxChainPEMSize)
	if !bytes.Equal(chain[0].Raw, b.Cert.Raw) {
		t.Fatal("cert-chain.pem does not start with ca-cert.pem: mixed bundle")
	}
	if hasCRL {
		crls, err := pki.DecodeCRLs(s.Data[pki.CRLKey], pki.MaxCRLBundlePEMSize)
		if err != nil {
			t.Fatalf("ca-crl.pem does not parse: %v", err)
		}
		if missing := pki.MissingCRLs(chain, crls); len(missing) > 0 {
			t.Fatalf("ca-crl.pem has no CRL of %q: istiod would refuse this cacerts", missing[0].Subject.String())
		}
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// renew asks cert-manager to re-issue ns/istio-ca, as `cmctl renew` does.
func renew(ctx context.Context, t *testing.T, c *lab.Cluster, ns string) {
	t.Helper()
	must(t, mesh.Renew(ctx, c, ns, "istio-ca", 30*time.Second, "the syncer e2e test"))
}

// poke makes the syncer reconcile the Certificate now (a watch event), which
// is how a fake-clock test says "time has moved".
func poke(ctx context.Context, t *testing.T, c *lab.Cluster, ns string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, "poke", func(ctx context.Context) error {
		crt, err := fetchCert(ctx, c, ns)
		if err != nil {
			return err
		}
		crt.Annotations["e2e.meshtrust.io/poke"] = time.Now().Format(time.RFC3339Nano)
		return c.Client.Update(ctx, crt)
	})
}

// waitReady waits for the Certificate to be Ready at revision rev or later
// (mesh.ReadyAt). On timeout it says where cert-manager's issuance stands.
func waitReady(t *testing.T, c *lab.Cluster, ns string, rev int) {
	t.Helper()
	err := lab.WaitFor(context.Background(), 2*time.Minute, func(ctx context.Context) error {
		crt, err := fetchCert(ctx, c, ns)
		if err != nil {
			return err
		}
		return mesh.ReadyAt(crt, rev)
	})
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t.Fatalf("waiting for Certificate %s/istio-ca to be Ready at revision %d: %v\n%s", ns, rev, err, c.DescribeCertificate(ctx, ns, "istio-ca"))
	}
}
