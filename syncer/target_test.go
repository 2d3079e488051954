package syncer

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// putSecret creates a Secret in the fake cluster.
func (e *env) putSecret(s *corev1.Secret) {
	e.t.Helper()
	if err := e.client.Create(context.Background(), s); err != nil {
		e.t.Fatal(err)
	}
}

// expectRefused checks that ns/cacerts still equals before, and that the
// refusal left a Warning event, a False condition and a counted failure.
func (e *env) expectRefused(before *corev1.Secret, reason string, contains ...string) {
	e.t.Helper()
	after := e.secret("ns", "cacerts")
	if after.Type != before.Type || !maps.EqualFunc(before.Data, after.Data, bytes.Equal) || !maps.Equal(before.Annotations, after.Annotations) ||
		!maps.Equal(before.Labels, after.Labels) {
		e.t.Errorf("cacerts changed: annotations %v", after.Annotations)
	}
	if evs := e.rec.take(); !hasEvent(evs, "Warning "+reason, contains...) {
		e.t.Errorf("no Warning %s event with %q in %q", reason, contains, evs)
	}
	if c := decision.Condition(e.getCert(), ConditionCACertsSynced); c == nil || c.Status != cmmeta.ConditionFalse || c.Reason != reason {
		e.t.Errorf("CACertsSynced condition = %+v", c)
	}
	if got := counterValue(e.t, e.r.Metrics.ValidationFailures.WithLabelValues(reason)); got < 1 {
		e.t.Errorf("validation failures{check=%s} = %v", reason, got)
	}
}

// TestAdoptTakesOverOnlyReleasedTargets: meshtrust.io/adopt takes a cacerts
// fed by another Certificate only once that one has let go; otherwise two
// adopting Certificates would overwrite each other forever.
func TestAdoptTakesOverOnlyReleasedTargets(t *testing.T) {
	other := func(ann map[string]string) *cmapi.Certificate {
		return &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", Annotations: ann},
			Spec: cmapi.CertificateSpec{SecretName: "other-tls", IsCA: true, CommonName: "other", IssuerRef: meshIssuer}}
	}
	adopt := map[string]string{AnnotationAdopt: "true"}
	tests := []struct {
		name  string
		ann   map[string]string
		other *cmapi.Certificate // nil: absent
		want  bool               // adopted
	}{
		{name: "other gone", ann: adopt, want: true},
		{name: "other no longer opts in", ann: adopt, other: other(map[string]string{AnnotationOptIn: "false"}), want: true},
		{name: "other now targets another Secret", ann: adopt, other: other(map[string]string{AnnotationOptIn: "true", AnnotationTarget: "ns/elsewhere"}), want: true},
		{name: "other still feeds it", ann: adopt, other: other(map[string]string{AnnotationOptIn: "true"})},
		{name: "other still feeds it, named explicitly", ann: adopt, other: other(map[string]string{AnnotationOptIn: "true", AnnotationTarget: "ns/cacerts"})},
		{name: "other gone, no adopt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			if tt.other != nil {
				if err := e.client.Create(context.Background(), tt.other); err != nil {
					t.Fatal(err)
				}
			}
			e.putSecret(&corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cacerts", Labels: map[string]string{decision.ManagedByLabel: decision.ManagedByValue},
					Annotations: map[string]string{AnnotationSource: "ns/other"}},
				Data: map[string][]byte{pki.RootCertKey: e.root.PEM()}})
			before := e.secret("ns", "cacerts").DeepCopy()
			e.certificate(tt.ann)
			e.issue(pkitest.Spec{}, e.root)
			_, _ = e.reconcile()
			if !tt.want {
				e.expectRefused(before, decision.ReasonOwnedByOther, "ns/other", "meshtrust.io/adopt")
				return
			}
			if s := e.secret("ns", "cacerts"); s.Annotations[AnnotationSource] != "ns/ca" || len(s.Data) != 4 {
				t.Errorf("not adopted: source %q, keys %v", s.Annotations[AnnotationSource], sortedKeys(s.Data))
			}
		})
	}
}

// TestTargetSecretTypeMustFitLayout: a kubernetes.io/tls Secret can never
// take the Istio layout (the type is immutable and requires tls.crt and
// tls.key), so the syncer says so instead of failing every update.
func TestTargetSecretTypeMustFitLayout(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		managed bool
		want    string // refusal reason, "" for a write
	}{
		{name: "managed tls Secret, istio layout", managed: true, want: decision.ReasonTargetType},
		{name: "adopted tls Secret, istio layout", ann: map[string]string{AnnotationAdopt: "true"}, want: decision.ReasonTargetType},
		{name: "managed tls Secret, tls layout", ann: map[string]string{AnnotationLayout: "tls"}, managed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cacerts"}, Type: corev1.SecretTypeTLS,
				Data: pkitest.TLSData(t, newInter(t, e.now(), pkitest.Spec{CN: "old"}, e.root), e.root)}
			if tt.managed {
				s.Labels = map[string]string{decision.ManagedByLabel: decision.ManagedByValue}
				s.Annotations = map[string]string{AnnotationSource: "ns/ca"}
			}
			e.putSecret(s)
			before := e.secret("ns", "cacerts").DeepCopy()
			e.certificate(tt.ann)
			inter := e.issue(pkitest.Spec{}, e.root)
			_, _ = e.reconcile()
			if tt.want != "" {
				e.expectRefused(before, tt.want, "kubernetes.io/tls", `meshtrust.io/istio-cacerts-layout: "tls"`, "delete the Secret")
				return
			}
			after := e.secret("ns", "cacerts")
			if after.Type != corev1.SecretTypeTLS || !bytes.HasPrefix(after.Data[pki.TLSCertKey], inter.PEM()) {
				t.Errorf("tls layout not written into the tls Secret")
			}
		})
	}
}

// TestPreviousRootsUnusableRefuses: when the roots now in cacerts cannot be
// carried into the new file, writing would drop them with no grace and
// istiod (<= 1.30) would reject the file, so cacerts stays as it is.
func TestPreviousRootsUnusableRefuses(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		// prepare leaves ns/cacerts in the state to test.
		prepare func(e *env)
		key     string // root file named in the event
		why     string
	}{
		{name: "adopted file with text before the PEM", ann: map[string]string{AnnotationAdopt: "true"}, key: pki.RootCertKey, why: "non-PEM",
			prepare: func(e *env) {
				e.putSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cacerts"},
					Data: map[string][]byte{pki.RootCertKey: append([]byte("# mesh root, made by hand\n"), e.root.PEM()...)}})
				e.issue(pkitest.Spec{}, e.root)
			}},
		{name: "merged roots over the size cap (tls layout)", ann: map[string]string{AnnotationLayout: "tls"}, key: pki.CACertBundleKey, why: "exceeds the maximum",
			prepare: func(e *env) {
				e.issue(pkitest.Spec{}, e.root)
				e.mustReconcile()
				// Whitespace between blocks is allowed, so this file parses
				// but leaves no room for one more root.
				s := e.secret("ns", "cacerts")
				pad := pki.MaxRootBundlePEMSize - len(s.Data[pki.CACertBundleKey]) - 10
				s.Data[pki.CACertBundleKey] = append(s.Data[pki.CACertBundleKey], strings.Repeat("\n", pad)...)
				if err := e.client.Update(context.Background(), s); err != nil {
					e.t.Fatal(err)
				}
				e.clock.Step(time.Hour)
				newRoot := pkitest.New(e.t, e.now(), pkitest.Spec{CN: "new-root", NotAfter: e.now().Add(5 * 365 * 24 * time.Hour)}, nil)
				e.issue(pkitest.Spec{CN: "under-new-root"}, newRoot)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.certificate(tt.ann)
			tt.prepare(e)
			before := e.secret("ns", "cacerts").DeepCopy()
			e.rec.take()
			if _, err := e.reconcile(); err == nil {
				t.Error("no error to retry with backoff")
			}
			e.expectRefused(before, decision.ReasonPreviousRoots, tt.key, tt.why, "left untouched")
		})
	}
}
