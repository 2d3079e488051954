package syncer

import (
	"context"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// TestLifetimeGuardNeverLoops drives the guard through repeated reconciles
// while a stand-in for cert-manager re-issues whenever Issuing is set. Every
// trigger is a signing, so a certificate issued already inside the guard
// must never trigger one, and a normal one exactly once.
func TestLifetimeGuardNeverLoops(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name string
		// first is the certificate issued before the reconciles, relative
		// to the starting time; reissue is what cert-manager issues on a
		// trigger (nil: a fresh 30-day certificate).
		first, reissue func(now time.Time) pkitest.Spec
		// ann are extra Certificate annotations (a record left by an
		// earlier controller).
		ann          map[string]string
		wantTriggers int
		wantReason   string
		wantWarning  string
	}{
		{name: "lifetime equals guard",
			first:       guardLength,
			reissue:     guardLength,
			wantWarning: decision.ReasonLifetimeTooShort},
		{name: "Vault-capped TTL, backdated 30s",
			first:       vaultCapped,
			reissue:     vaultCapped,
			wantWarning: decision.ReasonLifetimeTooShort},
		{name: "normal certificate inside the guard",
			first: func(now time.Time) pkitest.Spec {
				return pkitest.Spec{NotBefore: now.Add(-29 * day), NotAfter: now.Add(day)}
			},
			wantTriggers: 1, wantReason: decision.ReasonLifetimeGuard},
		{name: "renewal comes back inside the guard",
			first: func(now time.Time) pkitest.Spec {
				return pkitest.Spec{NotBefore: now.Add(-29 * day), NotAfter: now.Add(day)}
			},
			reissue: func(now time.Time) pkitest.Spec {
				return pkitest.Spec{NotBefore: now.Add(-10 * day), NotAfter: now.Add(day + 30*time.Minute)}
			},
			wantTriggers: 1, wantReason: decision.ReasonLifetimeGuard, wantWarning: decision.ReasonRenewedInGuard},
		{name: "trigger recorded, then lost in a crash",
			first: func(now time.Time) pkitest.Spec {
				return pkitest.Spec{NotBefore: now.Add(-29 * day), NotAfter: now.Add(day)}
			},
			ann:          map[string]string{AnnotationGuardRevision: "1", AnnotationGuardAt: "2000-01-01T00:00:00Z"},
			wantTriggers: 1, wantReason: decision.ReasonGuardResumed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.certificate(tt.ann)
			e.issue(tt.first(e.now()), e.root)
			triggers, reason := 0, ""
			var events []string
			for range 6 {
				// Once under a day is left the bundle is refused (and
				// retried); the rotation decision is what counts here.
				_, _ = e.reconcile()
				crt := e.getCert()
				if decision.Issuing(crt) {
					triggers++
					reason = decision.Condition(crt, cmapi.CertificateConditionIssuing).Reason
					spec := pkitest.Spec{}
					if tt.reissue != nil {
						spec = tt.reissue(e.now())
					}
					e.clock.Step(10 * time.Second)
					e.issue(spec, e.root) // clears Issuing, as cert-manager does
				}
				events = append(events, e.rec.take()...)
				e.clock.Step(time.Minute)
			}
			if triggers != tt.wantTriggers || reason != tt.wantReason {
				t.Errorf("%d triggers (last %q), want %d (%q); events %q", triggers, reason, tt.wantTriggers, tt.wantReason, events)
			}
			if tt.wantWarning != "" && !hasEvent(events, "Warning "+tt.wantWarning) {
				t.Errorf("no %s warning in %q", tt.wantWarning, events)
			}
			if tt.wantTriggers > 0 {
				crt := e.getCert()
				if crt.Annotations[AnnotationGuardRevision] != "1" {
					t.Errorf("guard record = %q, want revision 1", crt.Annotations[AnnotationGuardRevision])
				}
			}
		})
	}
}

// guardLength is a certificate whose whole lifetime is the guard (24h
// workload lifetime plus 1h margin).
func guardLength(now time.Time) pkitest.Spec {
	return pkitest.Spec{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
}

// vaultCapped is what Vault returns for a 25h TTL: notBefore backdated 30s.
func vaultCapped(now time.Time) pkitest.Spec {
	return pkitest.Spec{NotBefore: now.Add(-30 * time.Second), NotAfter: now.Add(25 * time.Hour)}
}

// TestLifetimeShorterThanGuardWarning checks the warning's words: it must say
// the lifetime, the guard and what to change.
func TestLifetimeShorterThanGuardWarning(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(nil)
	e.issue(pkitest.Spec{NotBefore: e.now().Add(-time.Hour), NotAfter: e.now().Add(24 * time.Hour)}, e.root)
	crt := e.getCert()
	crt.Status.RenewalTime = &metav1.Time{Time: crt.Status.NotAfter.Add(-8 * time.Hour)}
	if err := e.client.Status().Update(context.Background(), crt); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile()
	evs := e.rec.take()
	if !hasEvent(evs, "Warning LifetimeShorterThanGuard", "lifetime 25h0m0s", "guard 25h0m0s", "spec.duration", "Vault", "--syncer-workload-cert-ttl") {
		t.Errorf("events = %q", evs)
	}
	for _, ev := range evs {
		if strings.HasPrefix(ev, "Normal LifetimeGuard") {
			t.Errorf("guard triggered: %s", ev)
		}
	}
}
