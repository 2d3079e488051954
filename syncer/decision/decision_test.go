package decision

import (
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

func mt(t time.Time) *metav1.Time { return &metav1.Time{Time: t} }

func TestRotateChain(t *testing.T) {
	now := pkitest.RandomNow(t)
	sched := func(spec string) *Schedule {
		s, err := ParseSchedule(spec, 0, "uid")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	crt := func(notBefore, notAfter time.Time, rev int, conds ...cmapi.CertificateCondition) *cmapi.Certificate {
		return &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(notBefore.Add(-time.Hour))},
			Status:     cmapi.CertificateStatus{NotBefore: mt(notBefore), NotAfter: mt(notAfter), Revision: &rev, Conditions: conds},
		}
	}
	hourly := sched("0 * * * *")
	tests := []struct {
		name       string
		in         Input
		wantReason string
	}{
		{"healthy, no schedule", Input{Certificate: crt(now.Add(-time.Hour), now.Add(30*24*time.Hour), 1)}, ""},
		{"inside guard", Input{Certificate: crt(now.Add(-30*24*time.Hour), now.Add(24*time.Hour), 1)}, ReasonLifetimeGuard},
		{"exactly at guard", Input{Certificate: crt(now.Add(-time.Hour), now.Add(25*time.Hour), 1)}, ReasonLifetimeGuard},
		{"inside guard, issuance failing", Input{Certificate: func() *cmapi.Certificate {
			c := crt(now.Add(-30*24*time.Hour), now.Add(24*time.Hour), 1)
			c.Status.LastFailureTime = mt(now.Add(-time.Minute))
			return c
		}()}, ""},
		{"just outside guard", Input{Certificate: crt(now.Add(-time.Hour), now.Add(25*time.Hour+time.Second), 1)}, ""},
		{"slot due since issuance", Input{Certificate: crt(now.Add(-2*time.Hour), now.Add(30*24*time.Hour), 1), Schedule: hourly}, ReasonScheduled},
		{"issued after last slot", Input{Certificate: crt(now.Truncate(time.Hour).Add(time.Second), now.Add(30*24*time.Hour), 1), Schedule: hourly}, ""},
		{"slot recorded", Input{Certificate: crt(now.Add(-2*time.Hour), now.Add(30*24*time.Hour), 2), Schedule: hourly,
			LastSlot: now.Truncate(time.Hour), LastSlotRecorded: true, LastSlotRevision: 1}, ""},
		{"slot recorded, trigger lost", Input{Certificate: crt(now.Add(-2*time.Hour), now.Add(30*24*time.Hour), 1), Schedule: hourly,
			LastSlot: now.Truncate(time.Hour), LastSlotRecorded: true, LastSlotRevision: 1}, ReasonScheduledResumed},
		{"slot recorded, issuance failed", Input{Certificate: crt(now.Add(-2*time.Hour), now.Add(30*24*time.Hour), 1,
			cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionFalse}), Schedule: hourly,
			LastSlot: now.Truncate(time.Hour), LastSlotRecorded: true, LastSlotRevision: 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = now
			tt.in.WorkloadTTL = 24 * time.Hour
			tt.in.SafetyMargin = time.Hour
			reason, msg, failed := renewal(RotateChain().Renewal(tt.in))
			if reason != tt.wantReason || failed != (tt.wantReason != "") {
				t.Fatalf("got %q (%s), want %q", reason, msg, tt.wantReason)
			}
		})
	}
}

func TestScheduleJitterIsStable(t *testing.T) {
	now := pkitest.RandomNow(t)
	s, err := ParseSchedule("30 2 * * 1", 2*time.Hour, "uid-a")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ParseSchedule("30 2 * * 1", 2*time.Hour, "uid-b")
	slot := s.cron.Next(now)
	f := s.FireTime(slot)
	if f.Before(slot) || !f.Before(slot.Add(2*time.Hour)) || f != s.FireTime(slot) {
		t.Fatalf("fire time %s for slot %s", f, slot)
	}
	if other.FireTime(slot) == f {
		t.Log("two seeds gave the same jitter (possible, unlikely)")
	}
	if _, ok := s.Due(now, f.Add(-time.Second)); ok {
		t.Error("due before its fire time")
	}
	if got, ok := s.Due(now, f); !ok || got != slot {
		t.Errorf("Due at fire time = %s, %v", got, ok)
	}
	if got := s.NextFire(now, now); got != f {
		t.Errorf("NextFire = %s, want %s", got, f)
	}
	for _, bad := range []string{"", "* * *", "61 * * * *"} {
		if _, err := ParseSchedule(bad, 0, ""); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
}

func TestWriteChain(t *testing.T) {
	crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca"}}
	managed := func(src string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{ManagedByLabel: ManagedByValue}, Annotations: map[string]string{SourceAnnotation: src}}}
	}
	tests := []struct {
		name       string
		in         Input
		wantReason string
	}{
		{"not allowed", Input{TargetAllowed: false}, ReasonTargetNotAllowed},
		{"unmanaged", Input{TargetAllowed: true, Existing: &corev1.Secret{}}, ReasonUnmanagedTarget},
		{"unmanaged, adopt", Input{TargetAllowed: true, Existing: &corev1.Secret{}, Adopt: true, Source: &corev1.Secret{}, BundleErr: errSentinel}, ReasonInvalidBundle},
		{"other source", Input{TargetAllowed: true, Existing: managed("ns/other")}, ReasonOwnedByOther},
		{"too large", Input{TargetAllowed: true, Existing: managed("ns/ca"), Source: &corev1.Secret{Data: map[string][]byte{"a": make([]byte, 1<<20)}}}, ReasonSourceTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Certificate = crt
			reason, _, _ := refused(WriteChain().Refusal(tt.in))
			if reason != tt.wantReason {
				t.Fatalf("reason = %q, want %q", reason, tt.wantReason)
			}
		})
	}
}

var errSentinel = &sentinel{}

type sentinel struct{}

func (*sentinel) Error() string { return "bad" }

// TestLifetimeGuardOnlyWhenRenewalHelps covers the guard's brakes: a
// certificate issued already inside the guard (lifetime at most the guard,
// or a renewal that came back inside it) must never trigger, and a revision
// triggers at most once, since each trigger is a signing.
func TestLifetimeGuardOnlyWhenRenewalHelps(t *testing.T) {
	now := pkitest.RandomNow(t)
	const day = 24 * time.Hour
	crt := func(notBefore, notAfter time.Time, rev int, conds ...cmapi.CertificateCondition) *cmapi.Certificate {
		return &cmapi.Certificate{Status: cmapi.CertificateStatus{NotBefore: mt(notBefore), NotAfter: mt(notAfter), Revision: &rev, Conditions: conds}}
	}
	failed := cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionFalse, Reason: "Failed"}
	short := pkitest.New(t, now, pkitest.Spec{CN: "short", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(day)}, nil)
	tests := []struct {
		name       string
		in         Input
		wantReason string
		wantWarn   string
	}{
		{name: "lifetime equals guard", in: Input{Certificate: crt(now.Add(-time.Hour), now.Add(day), 1)}, wantWarn: ReasonLifetimeTooShort},
		{name: "lifetime shorter than guard", in: Input{Certificate: crt(now.Add(-time.Hour), now.Add(12*time.Hour), 1)}, wantWarn: ReasonLifetimeTooShort},
		{name: "guard-length TTL backdated 30s (Vault)", in: Input{Certificate: crt(now.Add(-30*time.Second), now.Add(25*time.Hour-time.Second), 1)}, wantWarn: ReasonLifetimeTooShort},
		{name: "lifetime from the parsed certificate", in: Input{Certificate: func() *cmapi.Certificate {
			c := crt(now, now.Add(day), 1)
			c.Status.NotBefore = nil
			return c
		}(), Bundle: &pki.Bundle{Cert: short.Cert}}, wantWarn: ReasonLifetimeTooShort},
		{name: "lifetime just over guard and slack", in: Input{Certificate: crt(now.Add(-time.Hour-IssuanceSlack-time.Second), now.Add(day), 1)}, wantReason: ReasonLifetimeGuard},
		{name: "long-lived, inside guard", in: Input{Certificate: crt(now.Add(-29*day), now.Add(day), 1)}, wantReason: ReasonLifetimeGuard},
		{name: "already triggered for this revision", in: Input{Certificate: crt(now.Add(-29*day), now.Add(day), 1, failed),
			GuardRecorded: true, GuardRevision: 1, GuardAt: now.Add(-time.Minute)}},
		{name: "trigger recorded but lost", in: Input{Certificate: crt(now.Add(-29*day), now.Add(day), 1),
			GuardRecorded: true, GuardRevision: 1, GuardAt: now.Add(-time.Minute)}, wantReason: ReasonGuardResumed},
		{name: "trigger recorded, now outside guard", in: Input{Certificate: crt(now.Add(-29*day), now.Add(2*day), 1),
			GuardRecorded: true, GuardRevision: 1, GuardAt: now.Add(-time.Minute)}},
		{name: "renewal came back inside the guard", in: Input{Certificate: crt(now.Add(-10*day), now.Add(24*time.Hour+30*time.Minute), 2),
			GuardRecorded: true, GuardRevision: 1, GuardAt: now.Add(-time.Minute)}, wantWarn: ReasonRenewedInGuard},
		{name: "renewal was fine, drifted into guard later", in: Input{Certificate: crt(now.Add(-29*day), now.Add(day), 2),
			GuardRecorded: true, GuardRevision: 1, GuardAt: now.Add(-29 * day)}, wantReason: ReasonLifetimeGuard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now, tt.in.WorkloadTTL, tt.in.SafetyMargin = now, 24*time.Hour, time.Hour
			reason, msg, failed := renewal(RotateChain().Renewal(tt.in))
			if reason != tt.wantReason || failed != (tt.wantReason != "") {
				t.Errorf("rotate: got %q (%s), want %q", reason, msg, tt.wantReason)
			}
			var warn string
			for _, f := range []WarnCheck{LifetimeShorterThanGuard, RenewedInsideGuard} {
				if w := f(tt.in); w != nil {
					r, m := w.Reason, w.Message
					if warn != "" {
						t.Errorf("second warning %s: %s", r, m)
					}
					warn, msg = r, m
				}
			}
			if warn != tt.wantWarn {
				t.Fatalf("warning %q (%s), want %q", warn, msg, tt.wantWarn)
			}
			// The warning must say what to change.
			switch warn {
			case ReasonLifetimeTooShort:
				for _, want := range []string{"lifetime", "guard 25h0m0s", "spec.duration", "max TTL", "--syncer-workload-cert-ttl"} {
					if !strings.Contains(msg, want) {
						t.Errorf("message %q lacks %q", msg, want)
					}
				}
			case ReasonRenewedInGuard:
				if !strings.Contains(msg, "revision 2") || !strings.Contains(msg, "not renewing again") {
					t.Errorf("message %q", msg)
				}
			}
		})
	}
}

func TestTargetChecks(t *testing.T) {
	crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca"}}
	managed := func(src string, typ corev1.SecretType) *corev1.Secret {
		return &corev1.Secret{Type: typ, ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{ManagedByLabel: ManagedByValue}, Annotations: map[string]string{SourceAnnotation: src}}}
	}
	unmanaged := func(typ corev1.SecretType) *corev1.Secret { return &corev1.Secret{Type: typ} }
	// passed is the reason of the check after the target checks: reaching
	// it means the target was accepted.
	const passed = ReasonInvalidBundle
	tests := []struct {
		name       string
		in         Input
		wantReason string
		wantMsg    string
	}{
		{name: "no target yet", in: Input{}, wantReason: passed},
		{name: "fed by itself", in: Input{Existing: managed("ns/ca", "")}, wantReason: passed},
		{name: "fed by another", in: Input{Existing: managed("ns/other", "")}, wantReason: ReasonOwnedByOther, wantMsg: "meshtrust.io/adopt"},
		{name: "fed by another that let go, no adopt", in: Input{Existing: managed("ns/other", ""), PreviousOwnerReleased: true}, wantReason: ReasonOwnedByOther},
		{name: "adopt, other still feeds it", in: Input{Existing: managed("ns/other", ""), Adopt: true}, wantReason: ReasonOwnedByOther, wantMsg: "still exists and opts in"},
		{name: "adopt, other let go", in: Input{Existing: managed("ns/other", ""), Adopt: true, PreviousOwnerReleased: true}, wantReason: passed},
		{name: "adopt unmanaged", in: Input{Existing: unmanaged(""), Adopt: true}, wantReason: passed},
		{name: "tls type, istio layout", in: Input{Existing: managed("ns/ca", corev1.SecretTypeTLS), Layout: pki.LayoutIstio}, wantReason: ReasonTargetType,
			wantMsg: `meshtrust.io/istio-cacerts-layout: "tls", or delete the Secret`},
		{name: "adopted tls type, istio layout", in: Input{Existing: unmanaged(corev1.SecretTypeTLS), Adopt: true, Layout: pki.LayoutIstio}, wantReason: ReasonTargetType, wantMsg: "kubernetes.io/tls"},
		{name: "tls type, tls layout", in: Input{Existing: managed("ns/ca", corev1.SecretTypeTLS), Layout: pki.LayoutTLS}, wantReason: passed},
		{name: "opaque, tls layout", in: Input{Existing: managed("ns/ca", corev1.SecretTypeOpaque), Layout: pki.LayoutTLS}, wantReason: passed},
		{name: "docker config type", in: Input{Existing: managed("ns/ca", corev1.SecretTypeDockerConfigJson), Layout: pki.LayoutTLS}, wantReason: ReasonTargetType, wantMsg: "Delete the Secret"},
		{name: "custom type", in: Input{Existing: managed("ns/ca", "example.com/ca"), Layout: pki.LayoutIstio}, wantReason: passed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Certificate, tt.in.TargetAllowed = crt, true
			tt.in.Source, tt.in.BundleErr = &corev1.Secret{}, errSentinel
			reason, msg, _ := refused(WriteChain().Refusal(tt.in))
			if reason != tt.wantReason || !strings.Contains(msg, tt.wantMsg) {
				t.Fatalf("got %q (%s), want %q with %q", reason, msg, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

func renewal(r *Renewal) (string, string, bool) {
	if r == nil {
		return "", "", false
	}
	return r.Reason, r.Message, true
}

func refused(r *Refusal) (string, string, bool) {
	if r == nil {
		return "", "", false
	}
	return r.Reason, r.Message, true
}

// A refused bundle keeps the pki check that failed, so that Compute names
// it without verifying again; other refusals are their own check.
func TestRefusalKeepsTheFailedCheck(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(3 * 365 * 24 * time.Hour)}, nil)
	inter := pkitest.New(t, now, pkitest.Spec{CN: "inter", NotAfter: now.Add(12 * time.Hour), PermittedURIDomains: []string{"east.mesh"}}, root)
	b, err := pki.ParseTLS(pkitest.TLSData(t, inter, root))
	if err != nil {
		t.Fatal(err)
	}
	bare := pkitest.New(t, now, pkitest.Spec{CN: "bare", NotAfter: now.Add(12 * time.Hour)}, root)
	unconstrained, err := pki.ParseTLS(pkitest.TLSData(t, bare, root))
	if err != nil {
		t.Fatal(err)
	}
	crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca"}}
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca-tls"}}
	for _, tc := range []struct {
		name  string
		in    Input
		check string
		retry bool
	}{
		{"expires within the workload lifetime", Input{Bundle: b, WorkloadTTL: 24 * time.Hour}, string(pki.CheckLifetime), true},
		{"does not parse", Input{BundleErr: &pki.Error{Check: pki.CheckMissing, Field: "tls.key"}}, string(pki.CheckMissing), true},
		{"too large", Input{Source: &corev1.Secret{ObjectMeta: src.ObjectMeta, Data: map[string][]byte{"a": make([]byte, 1<<20)}}}, string(pki.CheckSize), true},
		{"target not allowed", Input{TargetAllowed: false}, ReasonTargetNotAllowed, false},
		{"no URI name constraint", Input{Bundle: unconstrained, WorkloadTTL: time.Hour}, ReasonUnconstrained, false},
		{"valid", Input{Bundle: b, WorkloadTTL: time.Hour}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now, tc.in.Certificate = now, crt
			if tc.in.Source == nil {
				tc.in.Source = src
			}
			if tc.name != "target not allowed" {
				tc.in.TargetAllowed = true
			}
			r := WriteChain().Refusal(tc.in)
			switch {
			case tc.check == "" && r != nil:
				t.Fatalf("refused: %+v", r)
			case tc.check != "" && (r == nil || r.Check != tc.check || r.Retry != tc.retry):
				t.Fatalf("refusal %#v, want check %q retry %v", r, tc.check, tc.retry)
			}
		})
	}
}
