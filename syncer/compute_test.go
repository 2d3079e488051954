package syncer

import (
	"errors"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/meshconfig"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// TestCompute covers Compute's decisions without any client: each case is an
// Input and the Plan fields that matter, with events as plain strings.
func TestCompute(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(3 * 365 * 24 * time.Hour)}, nil)
	inter := newInter(t, now, pkitest.Spec{CN: "inter"}, root)
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca-tls"}, Data: pkitest.TLSData(t, inter, root)}
	rev := 3
	crt := func(ann map[string]string, conds ...cmapi.CertificateCondition) *cmapi.Certificate {
		a := map[string]string{AnnotationOptIn: "true"}
		for k, v := range ann {
			a[k] = v
		}
		return &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca", UID: "u", Annotations: a, CreationTimestamp: metav1.NewTime(now.Add(-48 * time.Hour))},
			Spec:       cmapi.CertificateSpec{SecretName: "ca-tls", IssuerRef: meshIssuer},
			Status: cmapi.CertificateStatus{Revision: &rev, NotBefore: &metav1.Time{Time: inter.Cert.NotBefore},
				NotAfter: &metav1.Time{Time: inter.Cert.NotAfter}, Conditions: conds},
		}
	}
	issuing := cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue}
	opts, _ := DefaultOptions().complete()
	tests := []struct {
		name       string
		in         Input
		wantResult string
		wantCreate bool
		wantRenew  string
		wantRecord bool
		wantEvents []string
	}{
		{name: "no source yet", in: Input{Certificate: crt(nil)}, wantResult: ResultPending},
		{name: "first sync", in: Input{Certificate: crt(nil), Source: src}, wantResult: ResultSynced, wantCreate: true},
		{name: "bad target annotation", in: Input{Certificate: crt(map[string]string{AnnotationTarget: "no-slash"}), Source: src},
			wantResult: ResultRefused, wantEvents: []string{`Warning InvalidAnnotation annotation meshtrust.io/istio-cacerts-target="no-slash": want <namespace>/<name>`}},
		{name: "bad restart annotation", in: Input{Certificate: crt(map[string]string{AnnotationRestartAfterSync: "statefulset/istiod"}), Source: src},
			wantResult: ResultRefused, wantEvents: []string{`Warning InvalidAnnotation annotation meshtrust.io/restart-after-sync="statefulset/istiod": want deployment/<name>`}},
		{name: "bad cron", in: Input{Certificate: crt(map[string]string{AnnotationRotationSchedule: "every day"}), Source: src},
			wantResult: ResultRefused, wantEvents: []string{`Warning InvalidAnnotation annotation meshtrust.io/rotation-schedule: parse cron expression "every day"`}},
		{name: "bad lifetime-guard record", in: Input{Certificate: crt(map[string]string{AnnotationGuardRevision: "1", AnnotationGuardAt: "yesterday"}), Source: src},
			wantResult: ResultRefused, wantEvents: []string{`Warning InvalidAnnotation annotation meshtrust.io/lifetime-guard-triggered-at="yesterday": want RFC 3339 time`}},
		{name: "slot due while issuing: record only", in: Input{Certificate: crt(map[string]string{AnnotationRotationSchedule: "* * * * *"}, issuing), Source: src},
			wantResult: ResultSynced, wantCreate: true, wantRecord: true, wantEvents: []string{"Normal ScheduledRotation slot"}},
		{name: "slot due: renew and record", in: Input{Certificate: crt(map[string]string{AnnotationRotationSchedule: "* * * * *"}), Source: src},
			wantResult: ResultSynced, wantCreate: true, wantRecord: true, wantRenew: decision.ReasonScheduled},
		{name: "Istio's trust domain differs: synced, with a warning", in: Input{Certificate: crt(nil), Source: src,
			Mesh: &meshconfig.TrustDomains{TrustDomain: "wrong.mesh"}, MeshSource: "ns/istio"},
			wantResult: ResultSynced, wantCreate: true, wantEvents: []string{`Warning MeshTrustDomainMismatch Istio's meshConfig.trustDomain is "wrong.mesh" (ConfigMap ns/istio), but the intermediate in cacerts is constrained to "east.mesh"`}},
		{name: "Istio's trust domain agrees", in: Input{Certificate: crt(nil), Source: src,
			Mesh: &meshconfig.TrustDomains{TrustDomain: testTrustDomain}, MeshSource: "ns/istio"}, wantResult: ResultSynced, wantCreate: true},
		{name: "Istio's mesh config unreadable", in: Input{Certificate: crt(nil), Source: src, MeshSource: "ns/istio", MeshErr: errors.New("key mesh does not parse")},
			wantResult: ResultSynced, wantCreate: true, wantEvents: []string{"Warning MeshConfigUnreadable cannot check Istio's trust domain against the intermediate: key mesh does not parse"}},
		{name: "restart target missing", in: Input{Certificate: crt(map[string]string{AnnotationRestartAfterSync: "deployment/istiod"}), Source: src},
			wantResult: ResultSynced, wantCreate: true, wantEvents: []string{"Warning RestartTargetMissing annotation meshtrust.io/restart-after-sync names deployment/istiod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now, tt.in.Options = now, opts
			p := Compute(tt.in)
			if p.Result != tt.wantResult || p.Create != tt.wantCreate || (p.Record != nil) != tt.wantRecord {
				t.Errorf("result=%s create=%v record=%v, want %s %v %v", p.Result, p.Create, p.Record != nil, tt.wantResult, tt.wantCreate, tt.wantRecord)
			}
			var renew string
			if p.Renew != nil {
				renew = p.Renew.Reason
			}
			if renew != tt.wantRenew {
				t.Errorf("renew = %q, want %q", renew, tt.wantRenew)
			}
			if len(p.Events) != len(tt.wantEvents) {
				t.Fatalf("events = %q, want %q", p.Events, tt.wantEvents)
			}
			for i, want := range tt.wantEvents {
				if !strings.HasPrefix(p.Events[i].String(), want) {
					t.Errorf("event %d = %q, want prefix %q", i, p.Events[i], want)
				}
			}
			if p.Create && (p.Secret == nil || p.Secret.Annotations[AnnotationSyncedAt] != now.Format(time.RFC3339)) {
				t.Error("synced-at is not the injected time")
			}
			// Pure: computing twice gives the same decision.
			if q := Compute(tt.in); q.Result != p.Result || q.RequeueAfter != p.RequeueAfter {
				t.Error("Compute is not deterministic")
			}
		})
	}
}

// A target named otherwise than the default is not watched, so Compute
// brings the next check forward to UnwatchedTargetRecheck; the default
// target is watched and waits for the next time-driven decision only.
func TestUnwatchedTargetIsRechecked(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(3 * 365 * 24 * time.Hour)}, nil)
	inter := newInter(t, now, pkitest.Spec{CN: "inter"}, root)
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca-tls"}, Data: pkitest.TLSData(t, inter, root)}
	opts, _ := DefaultOptions().complete()
	for _, tc := range []struct {
		target string
		want   func(time.Duration) bool
	}{
		{target: "", want: func(d time.Duration) bool { return d > UnwatchedTargetRecheck }},
		{target: "ns/" + opts.SecretName, want: func(d time.Duration) bool { return d > UnwatchedTargetRecheck }},
		{target: "ns/istio-ca-bundle", want: func(d time.Duration) bool { return d == UnwatchedTargetRecheck }},
	} {
		ann := map[string]string{AnnotationOptIn: "true"}
		if tc.target != "" {
			ann[AnnotationTarget] = tc.target
		}
		crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca", Annotations: ann},
			Spec:   cmapi.CertificateSpec{SecretName: "ca-tls", IssuerRef: meshIssuer},
			Status: cmapi.CertificateStatus{NotBefore: &metav1.Time{Time: inter.Cert.NotBefore}, NotAfter: &metav1.Time{Time: inter.Cert.NotAfter}}}
		p := Compute(Input{Now: now, Options: opts, Certificate: crt, Source: src})
		if p.Result != ResultSynced || !tc.want(p.RequeueAfter) {
			t.Errorf("target %q: result %s, requeue after %s", tc.target, p.Result, p.RequeueAfter)
		}
	}
}
