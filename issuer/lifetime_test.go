package issuer

import (
	"context"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// issuedPEM is a certificate valid for life from a point Vault would pick:
// 30s before issuance.
func issuedPEM(t *testing.T, life time.Duration) []byte {
	t.Helper()
	now := pkitest.RandomNow(t)
	c := newCert(t, "issued", false, pkitest.ECKey(t), nil, now.Add(-30*time.Second), life+30*time.Second)
	return c.PEM()
}

type crOption func(*cmapi.CertificateRequest)

func issuedCR(certPEM []byte, requested time.Duration, opts ...crOption) *cmapi.CertificateRequest {
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cr"},
		Spec: cmapi.CertificateRequestSpec{
			IssuerRef: cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "VaultIssuer", Name: "vi"},
			Duration:  &metav1.Duration{Duration: requested},
		},
		Status: cmapi.CertificateRequestStatus{
			Certificate: certPEM,
			Conditions: []cmapi.CertificateRequestCondition{
				{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue},
				{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: cmapi.CertificateRequestReasonIssued},
			},
		},
	}
	for _, o := range opts {
		o(cr)
	}
	return cr
}

func issuedCSR(certPEM []byte, requested time.Duration, signerName string) *certificatesv1.CertificateSigningRequest {
	secs := int32(requested / time.Second)
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: signerName, ExpirationSeconds: &secs},
		Status:     certificatesv1.CertificateSigningRequestStatus{Certificate: certPEM},
	}
}

func TestLifetimeDecision(t *testing.T) {
	oneHour := issuedPEM(t, time.Hour)
	tests := []struct {
		name        string
		obj         client.Object
		wantReport  bool
		wantGranted time.Duration
		wantErr     string
		// wantChecked: the predicate lets it through although nothing is
		// reported, because only the certificate tells.
		wantChecked bool
	}{
		{name: "truncated request to a VaultIssuer", obj: issuedCR(oneHour, 3*time.Hour), wantReport: true, wantGranted: time.Hour + 30*time.Second},
		{name: "truncated request to a VaultClusterIssuer", obj: issuedCR(oneHour, 3*time.Hour, func(cr *cmapi.CertificateRequest) { cr.Spec.IssuerRef.Kind = "VaultClusterIssuer" }), wantReport: true, wantGranted: time.Hour + 30*time.Second},
		{name: "empty kind means our first kind", obj: issuedCR(oneHour, 3*time.Hour, func(cr *cmapi.CertificateRequest) { cr.Spec.IssuerRef.Kind = "" }), wantReport: true, wantGranted: time.Hour + 30*time.Second},
		{name: "what was asked", obj: issuedCR(oneHour, time.Hour), wantChecked: true},
		{name: "short by under a minute", obj: issuedCR(oneHour, time.Hour+80*time.Second), wantChecked: true},
		{name: "already reported", obj: issuedCR(oneHour, 3*time.Hour, func(cr *cmapi.CertificateRequest) {
			cr.Status.Conditions = append(cr.Status.Conditions, cmapi.CertificateRequestCondition{Type: ConditionLifetimeTruncated, Status: cmmeta.ConditionTrue})
		})},
		{name: "not Ready yet", obj: issuedCR(oneHour, 3*time.Hour, func(cr *cmapi.CertificateRequest) { cr.Status.Conditions[1].Status = cmmeta.ConditionFalse })},
		{name: "no certificate", obj: issuedCR(nil, 3*time.Hour)},
		{name: "another group's issuer", obj: issuedCR(oneHour, 3*time.Hour, func(cr *cmapi.CertificateRequest) {
			cr.Spec.IssuerRef.Group = "cert-manager.io"
			cr.Spec.IssuerRef.Kind = "Issuer"
		})},
		{name: "another kind of ours", obj: issuedCR(oneHour, 3*time.Hour, func(cr *cmapi.CertificateRequest) { cr.Spec.IssuerRef.Kind = "SomethingElse" })},
		{name: "garbage certificate names the field", obj: issuedCR([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 3*time.Hour), wantErr: "status.certificate"},
		{name: "truncated Kubernetes CSR", obj: issuedCSR(oneHour, 3*time.Hour, vaultcontract.SignerNamePrefix+"east"), wantReport: true, wantGranted: time.Hour + 30*time.Second},
		{name: "Kubernetes CSR for another signer", obj: issuedCSR(oneHour, 3*time.Hour, "kubernetes.io/kube-apiserver-client")},
		{name: "Kubernetes CSR not yet signed", obj: issuedCSR(nil, 3*time.Hour, vaultcontract.SignerNamePrefix+"east")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, report, err := lifetimeDecision(tc.obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if report != tc.wantReport {
				t.Fatalf("report = %v, want %v (%+v)", report, tc.wantReport, rep)
			}
			if report && (rep.Granted != tc.wantGranted || rep.Requested != 3*time.Hour) {
				t.Fatalf("report %+v, want granted %s of 3h", rep, tc.wantGranted)
			}
			if got := needsLifetimeCheck(tc.obj); got != (tc.wantReport || tc.wantChecked) {
				t.Errorf("predicate filter = %v", got)
			}
		})
	}
}

func TestLifetimePredicate(t *testing.T) {
	p := lifetimePredicate()
	truncated := issuedCR(issuedPEM(t, time.Hour), 3*time.Hour)
	pending := issuedCR(nil, 3*time.Hour)
	if !p.Create(event.CreateEvent{Object: truncated}) || !p.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: truncated}) {
		t.Error("an issued request of ours is filtered out")
	}
	if p.Update(event.UpdateEvent{ObjectOld: truncated, ObjectNew: pending}) || p.Create(event.CreateEvent{Object: pending}) {
		t.Error("a request not yet issued is let through")
	}
	if p.Delete(event.DeleteEvent{Object: truncated}) {
		t.Error("a deletion is let through")
	}
}

// TestLifetimeReconcile reconciles a truncated request twice while the
// cache still shows it without the condition, as happens right after the
// first write: the condition is set once with both durations and one event
// is emitted.
func TestLifetimeReconcile(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	cr := issuedCR(issuedPEM(t, time.Hour), 3*time.Hour)
	server := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cr.DeepCopy()).WithStatusSubresource(&cmapi.CertificateRequest{}).Build()
	// The cache never catches up; writes go to the server.
	var applies int
	cache := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme).WithObjects(cr.DeepCopy()).Build(), interceptor.Funcs{
		SubResourceApply: func(ctx context.Context, _ client.Client, sub string, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
			applies++
			return server.SubResource(sub).Apply(ctx, obj, opts...)
		},
	})
	now := pkitest.RandomNow(t)
	rec := events.NewFakeRecorder(10)
	r := &lifetimeReconciler{client: cache, live: server, recorder: rec, clock: clocktesting.NewFakeClock(now),
		newObject: func() client.Object { return &cmapi.CertificateRequest{} }}
	for range 2 {
		if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cr)}); err != nil {
			t.Fatal(err)
		}
	}
	if applies != 1 {
		t.Errorf("%d status writes, want 1", applies)
	}
	close(rec.Events)
	var evs []string
	for e := range rec.Events {
		evs = append(evs, e)
	}
	if len(evs) != 1 || !strings.Contains(evs[0], corev1.EventTypeWarning+" "+ConditionLifetimeTruncated) || !strings.Contains(evs[0], "for 1h0m30s instead of the requested 3h0m0s") {
		t.Errorf("events %q, want one %s warning naming both durations", evs, ConditionLifetimeTruncated)
	}
	var got cmapi.CertificateRequest
	if err := server.Get(context.Background(), client.ObjectKeyFromObject(cr), &got); err != nil {
		t.Fatal(err)
	}
	var cond *cmapi.CertificateRequestCondition
	for i := range got.Status.Conditions {
		if got.Status.Conditions[i].Type == ConditionLifetimeTruncated {
			cond = &got.Status.Conditions[i]
		}
	}
	switch {
	case cond == nil:
		t.Fatalf("no %s condition in %+v", ConditionLifetimeTruncated, got.Status.Conditions)
	case cond.Status != cmmeta.ConditionTrue || cond.Reason != ReasonVaultCappedTTL:
		t.Errorf("condition %+v", cond)
	case !strings.Contains(cond.Message, "1h0m30s") || !strings.Contains(cond.Message, "3h0m0s"):
		t.Errorf("message %q does not name both durations", cond.Message)
	case cond.LastTransitionTime == nil || !cond.LastTransitionTime.Time.Equal(now.Truncate(time.Second)):
		t.Errorf("lastTransitionTime %v, want the clock's %v", cond.LastTransitionTime, now)
	}
}
