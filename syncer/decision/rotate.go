package decision

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// Renewal is a rotation check's verdict: renew the Certificate now.
type Renewal struct {
	// Reason is the event and Issuing-condition reason.
	Reason string
	// Message says why.
	Message string
}

// RotateCheck is one "must I renew now?" check; nil means no.
type RotateCheck func(Input) *Renewal

// RotateChecks run in order and stop at the first that renews.
type RotateChecks []RotateCheck

// Renewal returns the first check's renewal, or nil when none renews.
func (c RotateChecks) Renewal(in Input) *Renewal {
	for _, f := range c {
		if r := f(in); r != nil {
			return r
		}
	}
	return nil
}

// Warning is a warn check's verdict: something a person must fix, which no
// renewal can.
type Warning struct {
	// Reason is the event reason.
	Reason string
	// Message says what is wrong and what to change.
	Message string
}

// WarnCheck is one warn check; nil means nothing to say.
type WarnCheck func(Input) *Warning

// Warnings runs every warn check, in order, and returns what they say.
func Warnings(in Input) []Warning {
	var out []Warning
	for _, f := range []WarnCheck{RenewBeforeTooShort, RenewalFailingInsideGuard, LifetimeShorterThanGuard, RenewedInsideGuard, MeshTrustDomainMatches} {
		if w := f(in); w != nil {
			out = append(out, *w)
		}
	}
	return out
}

// RotateChain answers "must I trigger a renewal now?". A renewal already in
// progress is not this chain's business: the caller skips it then.
func RotateChain() RotateChecks {
	return RotateChecks{
		InsideLifetimeGuard,
		GuardTriggerLost,
		ScheduledSlotDue,
		ScheduledTriggerLost,
	}
}

// Guard is the remaining lifetime below which the intermediate must be renewed.
func (in Input) Guard() time.Duration { return in.WorkloadTTL + in.SafetyMargin }

// IssuanceSlack is how much longer than the guard a certificate's lifetime
// must be for a renewal to get it out of the guard. Issuers backdate
// notBefore (Vault by 30s) and issuance takes a while after the trigger, so
// a certificate requested for exactly the guard's length is inside the guard
// the moment it arrives; renewing it would only bring the next such one.
const IssuanceSlack = 5 * time.Minute

// Lifetime is the current certificate's whole validity period, from the
// Certificate's status or else from the parsed source bundle.
func Lifetime(in Input) (time.Duration, bool) {
	st := in.Certificate.Status
	if st.NotBefore != nil && st.NotAfter != nil {
		return st.NotAfter.Sub(st.NotBefore.Time), true
	}
	if in.Bundle != nil && in.Bundle.Cert != nil {
		return in.Bundle.Cert.NotAfter.Sub(in.Bundle.Cert.NotBefore), true
	}
	return 0, false
}

// lifetimeTooShort reports whether the current certificate was issued
// already inside the guard, so no renewal of the same spec can help.
func lifetimeTooShort(in Input) (time.Duration, bool) {
	life, ok := Lifetime(in)
	return life, ok && life <= in.Guard()+IssuanceSlack
}

// renewedInsideGuard reports whether a certificate issued since the guard
// last triggered still expires within the guard of that trigger: the
// renewal asked for did not get out of the guard, and asking again would
// loop.
func renewedInsideGuard(in Input) bool {
	na := in.Certificate.Status.NotAfter
	return in.GuardRecorded && in.GuardRevision < Revision(in.Certificate) && na != nil &&
		!na.After(in.GuardAt.Add(in.Guard()+IssuanceSlack))
}

// insideGuard reports whether the certificate has at most the guard left.
func insideGuard(in Input) (time.Duration, bool) {
	na := in.Certificate.Status.NotAfter
	if na == nil {
		return 0, false
	}
	left := na.Sub(in.Now)
	return left, left <= in.Guard()
}

// InsideLifetimeGuard fires when the issued certificate has less than one
// workload lifetime plus the margin left, once per revision, and only when a
// renewal can get out of the guard (LifetimeShorterThanGuard and
// RenewedInsideGuard warn otherwise).
func InsideLifetimeGuard(in Input) *Renewal {
	left, inside := insideGuard(in)
	if !inside {
		return nil
	}
	if in.Certificate.Status.LastFailureTime != nil {
		// cert-manager is backing off after a failed issuance; forcing it
		// again on every reconcile would hammer the issuer. The caller warns.
		return nil
	}
	if _, short := lifetimeTooShort(in); short || renewedInsideGuard(in) {
		return nil
	}
	if in.GuardRecorded && in.GuardRevision == Revision(in.Certificate) {
		// Already asked for this revision (GuardTriggerLost re-sends a
		// trigger that never reached the API server).
		return nil
	}
	na := in.Certificate.Status.NotAfter
	return &Renewal{Reason: ReasonLifetimeGuard, Message: fmt.Sprintf("certificate expires at %s, in %s, less than the workload lifetime %s plus margin %s; triggering renewal", na.UTC().Format(time.RFC3339), left.Round(time.Second), in.WorkloadTTL, in.SafetyMargin)}
}

// GuardTriggerLost fires when the guard recorded a trigger for the current
// revision but cert-manager shows no Issuing condition at all: the
// controller died between recording and setting the condition, so
// cert-manager never saw the first one.
func GuardTriggerLost(in Input) *Renewal {
	if !in.GuardRecorded || in.GuardRevision != Revision(in.Certificate) {
		return nil
	}
	if Condition(in.Certificate, cmapi.CertificateConditionIssuing) != nil || in.Certificate.Status.LastFailureTime != nil {
		return nil
	}
	if _, inside := insideGuard(in); !inside {
		return nil
	}
	return &Renewal{Reason: ReasonGuardResumed, Message: fmt.Sprintf("lifetime-guard renewal recorded at %s for revision %d did not start; triggering it", in.GuardAt.UTC().Format(time.RFC3339), in.GuardRevision)}
}

// LifetimeShorterThanGuard warns when the certificate's whole lifetime is
// not longer than the guard: it is inside the guard from issuance, so the
// guard never renews it and only a configuration change helps.
func LifetimeShorterThanGuard(in Input) *Warning {
	life, short := lifetimeTooShort(in)
	if !short {
		return nil
	}
	return &Warning{Reason: ReasonLifetimeTooShort, Message: fmt.Sprintf("certificate lifetime %s is not longer than the lifetime guard %s (workload lifetime %s, --syncer-workload-cert-ttl, plus margin %s, --syncer-safety-margin, plus %s issuance slack): it is inside the guard from the moment it is issued, so the syncer does not trigger renewals for it. Raise the Certificate's spec.duration, and the issuer's cap on it (Vault role or PKI mount max TTL), above %s, or lower --syncer-workload-cert-ttl",
		life.Round(time.Second), in.Guard(), in.WorkloadTTL, in.SafetyMargin, IssuanceSlack, in.Guard()+IssuanceSlack)}
}

// RenewedInsideGuard warns when the certificate issued after a guard
// trigger is itself inside the guard, typically because the issuer caps its
// notAfter (its own CA expires soon).
func RenewedInsideGuard(in Input) *Warning {
	if _, inside := insideGuard(in); !inside || !renewedInsideGuard(in) {
		return nil
	}
	if _, short := lifetimeTooShort(in); short {
		return nil // LifetimeShorterThanGuard says it better
	}
	return &Warning{Reason: ReasonRenewedInGuard, Message: fmt.Sprintf("revision %d, issued after the lifetime guard triggered at %s for revision %d, expires at %s, still within the guard %s; not renewing again. The issuer caps its lifetime: renew or extend the issuing CA (or raise the Vault max TTL), then renew the Certificate",
		Revision(in.Certificate), in.GuardAt.UTC().Format(time.RFC3339), in.GuardRevision, in.Certificate.Status.NotAfter.UTC().Format(time.RFC3339), in.Guard())}
}

// ScheduledSlotDue fires when a schedule slot has passed since the last
// recorded one. Missed slots collapse into one renewal.
func ScheduledSlotDue(in Input) *Renewal {
	slot, ok := DueSlot(in)
	if !ok {
		return nil
	}
	return &Renewal{Reason: ReasonScheduled, Message: fmt.Sprintf("scheduled rotation for slot %s (schedule %q)", slot.UTC().Format(time.RFC3339), in.Schedule.Spec)}
}

// ScheduledTriggerLost fires when a slot was recorded but the renewal it asked
// for never started: the revision is unchanged and cert-manager shows no
// Issuing condition at all. That happens if the controller died between
// recording the slot and setting the condition.
func ScheduledTriggerLost(in Input) *Renewal {
	if in.Schedule == nil || !in.LastSlotRecorded || Revision(in.Certificate) != in.LastSlotRevision {
		return nil
	}
	if c := Condition(in.Certificate, cmapi.CertificateConditionIssuing); c != nil {
		return nil
	}
	return &Renewal{Reason: ReasonScheduledResumed, Message: fmt.Sprintf("renewal for recorded slot %s did not start (revision still %d); triggering it", in.LastSlot.UTC().Format(time.RFC3339), in.LastSlotRevision)}
}

// DueSlot returns the latest schedule slot whose (jittered) fire time has
// passed and that is after the last recorded slot, or after the baseline
// (creation or last issuance) if none was recorded.
func DueSlot(in Input) (time.Time, bool) {
	if in.Schedule == nil {
		return time.Time{}, false
	}
	since := in.LastSlot
	if !in.LastSlotRecorded {
		since = Baseline(in.Certificate)
	}
	return in.Schedule.Due(since, in.Now)
}

// Baseline is when the current certificate was issued, or the Certificate
// was created if it never was: slots before it are not owed a rotation.
func Baseline(crt *cmapi.Certificate) time.Time {
	b := crt.CreationTimestamp.Time
	if nb := crt.Status.NotBefore; nb != nil && nb.After(b) {
		b = nb.Time
	}
	return b
}

// RenewBeforeTooShort warns when cert-manager's renewal point leaves less than
// one workload lifetime plus the margin before expiry.
func RenewBeforeTooShort(in Input) *Warning {
	na, rt := in.Certificate.Status.NotAfter, in.Certificate.Status.RenewalTime
	if na == nil || rt == nil {
		return nil
	}
	if left := na.Sub(rt.Time); left < in.Guard() {
		return &Warning{Reason: ReasonRenewBeforeTooLow, Message: fmt.Sprintf("cert-manager renews at %s, only %s before expiry; istiod needs at least the workload lifetime %s plus margin %s. Raise spec.renewBefore (or spec.duration)", rt.UTC().Format(time.RFC3339), left.Round(time.Second), in.WorkloadTTL, in.SafetyMargin)}
	}
	return nil
}

// Issuing reports whether cert-manager is issuing (Issuing=True).
func Issuing(crt *cmapi.Certificate) bool {
	c := Condition(crt, cmapi.CertificateConditionIssuing)
	return c != nil && c.Status == cmmeta.ConditionTrue
}

// Condition returns the Certificate's condition of type t, or nil.
func Condition(crt *cmapi.Certificate, t cmapi.CertificateConditionType) *cmapi.CertificateCondition {
	i := slices.IndexFunc(crt.Status.Conditions, func(c cmapi.CertificateCondition) bool { return c.Type == t })
	if i < 0 {
		return nil
	}
	return &crt.Status.Conditions[i]
}

// Revision is the Certificate's status.revision, 0 if unset.
func Revision(crt *cmapi.Certificate) int {
	if crt.Status.Revision == nil {
		return 0
	}
	return *crt.Status.Revision
}

// RootsChanged reports whether the sets of roots differ.
func RootsChanged(prev, cur []*x509.Certificate) bool {
	for _, c := range prev {
		if !pki.Contains(cur, c) {
			return true
		}
	}
	return false
}

// RenewalFailingInsideGuard warns when the certificate is inside the lifetime
// guard and cert-manager's last issuance failed.
func RenewalFailingInsideGuard(in Input) *Warning {
	na, lf := in.Certificate.Status.NotAfter, in.Certificate.Status.LastFailureTime
	if na == nil || lf == nil || na.Sub(in.Now) > in.Guard() {
		return nil
	}
	return &Warning{Reason: ReasonRenewalFailing, Message: fmt.Sprintf("certificate expires at %s, inside the lifetime guard, and cert-manager's last issuance failed at %s; istiod will stop issuing valid workload certificates unless the issuer recovers", na.UTC().Format(time.RFC3339), lf.UTC().Format(time.RFC3339))}
}
