package policy

import (
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
		{"inside guard", Input{Certificate: crt(now.Add(-time.Hour), now.Add(24*time.Hour), 1)}, ReasonLifetimeGuard},
		{"exactly at guard", Input{Certificate: crt(now.Add(-time.Hour), now.Add(25*time.Hour), 1)}, ReasonLifetimeGuard},
		{"inside guard, issuance failing", Input{Certificate: func() *cmapi.Certificate {
			c := crt(now.Add(-time.Hour), now.Add(24*time.Hour), 1)
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
			reason, msg, failed := RotateChain().Evaluate(tt.in)
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
			reason, _, _ := WriteChain().Evaluate(tt.in)
			if reason != tt.wantReason {
				t.Fatalf("reason = %q, want %q", reason, tt.wantReason)
			}
		})
	}
}

var errSentinel = &sentinel{}

type sentinel struct{}

func (*sentinel) Error() string { return "bad" }
