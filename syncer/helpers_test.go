package syncer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// meshIssuer is the issuerRef of the test Certificates: meshtrust's, which
// the syncer allows by default.
var meshIssuer = cmmeta.IssuerReference{Group: "meshtrust.io", Kind: "VaultClusterIssuer", Name: "meshtrust-vault"}

// testTrustDomain is the URI name constraint of the test intermediates.
const testTrustDomain = "east.mesh"

// newInter is pkitest.New for an intermediate: name-constrained to
// testTrustDomain unless spec names its own constraints (an empty, non-nil
// list for none).
func newInter(t testing.TB, now time.Time, spec pkitest.Spec, root *pkitest.Cert) *pkitest.Cert {
	t.Helper()
	if spec.PermittedURIDomains == nil && !spec.NotCA {
		spec.PermittedURIDomains = []string{testTrustDomain}
	}
	return pkitest.New(t, now, spec, root)
}

func testScheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := cmapi.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// recorder collects events as "Type Reason message".
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Eventf(_ runtime.Object, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, eventtype+" "+reason+" "+fmt.Sprintf(note, args...))
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// env is a fake cluster with one opted-in Certificate "ns/ca" whose Secret
// is "ns/ca-tls".
type env struct {
	t      *testing.T
	clock  *clocktesting.FakeClock
	client client.Client
	rec    *recorder
	r      *Reconciler
	root   *pkitest.Cert
}

func newEnv(t *testing.T, opts Options, objs ...client.Object) *env {
	t.Helper()
	now := pkitest.RandomNow(t)
	e := &env{t: t, clock: clocktesting.NewFakeClock(now), rec: &recorder{}}
	e.root = pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(5 * 365 * 24 * time.Hour)}, nil)
	e.client = fake.NewClientBuilder().WithScheme(testScheme(t)).
		WithStatusSubresource(&cmapi.Certificate{}).WithObjects(objs...).Build()
	d := DefaultOptions()
	if opts.WorkloadCertTTL == 0 {
		opts.WorkloadCertTTL = d.WorkloadCertTTL
	}
	if opts.SafetyMargin == 0 {
		opts.SafetyMargin = d.SafetyMargin
	}
	opts.Clock = e.clock
	opts, err := opts.complete()
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.r = &Reconciler{Client: e.client, Targets: e.client, APIReader: e.client, Recorder: e.rec, Metrics: m, Options: opts}
	return e
}

func (e *env) now() time.Time { return e.clock.Now() }

// certificate creates the opted-in Certificate with extra annotations.
func (e *env) certificate(ann map[string]string) *cmapi.Certificate {
	e.t.Helper()
	a := map[string]string{AnnotationOptIn: "true"}
	for k, v := range ann {
		a[k] = v
	}
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca", Annotations: a, UID: "uid-1",
			CreationTimestamp: metav1.NewTime(e.now().Add(-90 * 24 * time.Hour))},
		Spec: cmapi.CertificateSpec{SecretName: "ca-tls", IsCA: true, CommonName: "intermediate", IssuerRef: meshIssuer},
	}
	if err := e.client.Create(context.Background(), crt); err != nil {
		e.t.Fatal(err)
	}
	return crt
}

// issue writes an intermediate under root into the source Secret and
// updates the Certificate status as cert-manager would.
func (e *env) issue(spec pkitest.Spec, root *pkitest.Cert) *pkitest.Cert {
	e.t.Helper()
	if spec.CN == "" {
		spec.CN = "intermediate"
	}
	inter := newInter(e.t, e.now(), spec, root)
	e.setSource(pkitest.TLSData(e.t, inter, root))
	crt := e.getCert()
	rev := 1
	if crt.Status.Revision != nil {
		rev = *crt.Status.Revision + 1
	}
	crt.Status.Revision = &rev
	crt.Status.NotBefore = &metav1.Time{Time: inter.Cert.NotBefore}
	crt.Status.NotAfter = &metav1.Time{Time: inter.Cert.NotAfter}
	crt.Status.Conditions = nil
	if err := e.client.Status().Update(context.Background(), crt); err != nil {
		e.t.Fatal(err)
	}
	return inter
}

func (e *env) setSource(data map[string][]byte) {
	e.t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca-tls",
		Labels: map[string]string{cmapi.PartOfCertManagerControllerLabelKey: "true"}}, Data: data}
	old := &corev1.Secret{}
	if err := e.client.Get(ctx, client.ObjectKeyFromObject(s), old); err == nil {
		old.Data = data
		if err := e.client.Update(ctx, old); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if err := e.client.Create(ctx, s); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) getCert() *cmapi.Certificate {
	e.t.Helper()
	crt := &cmapi.Certificate{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "ca"}, crt); err != nil {
		e.t.Fatal(err)
	}
	return crt
}

func (e *env) secret(ns, name string) *corev1.Secret {
	e.t.Helper()
	s := &corev1.Secret{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return nil
	}
	return s
}

func (e *env) reconcile() (reconcile.Result, error) {
	return e.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "ca"}})
}

func (e *env) mustReconcile() reconcile.Result {
	e.t.Helper()
	res, err := e.reconcile()
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func deployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func hasEvent(events []string, prefix string, contains ...string) bool {
	for _, ev := range events {
		if !strings.HasPrefix(ev, prefix) {
			continue
		}
		ok := true
		for _, c := range contains {
			ok = ok && strings.Contains(ev, c)
		}
		if ok {
			return true
		}
	}
	return false
}
