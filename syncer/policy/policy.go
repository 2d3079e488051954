package policy

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// ManagedByLabel and ManagedByValue mark a cacerts Secret as meshtrust's.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "meshtrust"
	// SourceAnnotation on a cacerts Secret names the Certificate it came from.
	SourceAnnotation = "meshtrust.io/source-certificate"
)

// Input is everything a decision may look at. The caller gathers it.
type Input struct {
	// Now is the reconcile time from the injected clock.
	Now time.Time
	// Certificate is the opted-in source Certificate.
	Certificate *cmapi.Certificate
	// Source is cert-manager's Secret for the Certificate, nil if absent.
	Source *corev1.Secret
	// Target is the cacerts Secret's name.
	Target types.NamespacedName
	// Existing is the current cacerts Secret, nil if absent.
	Existing *corev1.Secret
	// TargetAllowed says whether the controller may write to Target's namespace.
	TargetAllowed bool
	// Adopt is the Certificate's meshtrust.io/adopt annotation.
	Adopt bool
	// Bundle is Source parsed, nil if parsing failed (see BundleErr).
	Bundle *pki.Bundle
	// BundleErr is the parse error of Source, if any.
	BundleErr error
	// WorkloadTTL is the workload-certificate lifetime istiod issues.
	WorkloadTTL time.Duration
	// SafetyMargin is added to WorkloadTTL by the lifetime guard.
	SafetyMargin time.Duration
	// Schedule is the rotation schedule, nil if none.
	Schedule *Schedule
	// LastSlot is the last recorded scheduled-rotation slot (zero if none).
	LastSlot time.Time
	// LastSlotRevision is the Certificate revision recorded with LastSlot.
	LastSlotRevision int
	// LastSlotRecorded reports whether a slot was recorded at all.
	LastSlotRecorded bool
}

// A Func evaluates one check.
type Func func(Input) (reason, message string, failed bool)

// Chain evaluates Funcs in order and stops at the first failure.
type Chain []Func

// Evaluate returns the first failing check's reason and message.
func (c Chain) Evaluate(in Input) (string, string, bool) {
	for _, f := range c {
		if reason, msg, failed := f(in); failed {
			return reason, msg, true
		}
	}
	return "", "", false
}

// Event reasons used by the checks.
const (
	ReasonInvalidAnnotation = "InvalidAnnotation"
	ReasonTargetNotAllowed  = "TargetNotAllowed"
	ReasonUnmanagedTarget   = "UnmanagedCACerts"
	ReasonOwnedByOther      = "CACertsOwnedByOther"
	ReasonSourceTooLarge    = "SourceTooLarge"
	ReasonInvalidBundle     = "InvalidBundle"
	ReasonLifetimeGuard     = "LifetimeGuard"
	ReasonScheduled         = "ScheduledRotation"
	ReasonScheduledResumed  = "ScheduledRotationResumed"
	ReasonRenewBeforeTooLow = "RenewBeforeTooShort"
	ReasonRenewalFailing    = "RenewalFailing"
)

// WriteChain answers "may I write the bundle to cacerts?".
func WriteChain() Chain {
	return Chain{
		TargetNamespaceAllowed,
		TargetNotForeign,
		SourceWithinSize,
		BundleParses,
		BundleVerifies,
	}
}

// TargetNamespaceAllowed refuses targets outside --syncer-target-namespaces.
func TargetNamespaceAllowed(in Input) (string, string, bool) {
	if in.TargetAllowed {
		return "", "", false
	}
	return ReasonTargetNotAllowed, fmt.Sprintf("target %s is in namespace %q, which --syncer-target-namespaces does not allow", in.Target, in.Target.Namespace), true
}

// TargetNotForeign refuses to overwrite a cacerts Secret that meshtrust does
// not manage, or that another Certificate feeds, unless adoption is asked for.
func TargetNotForeign(in Input) (string, string, bool) {
	if in.Existing == nil || in.Adopt {
		return "", "", false
	}
	if in.Existing.Labels[ManagedByLabel] != ManagedByValue {
		return ReasonUnmanagedTarget, fmt.Sprintf("Secret %s exists and is not managed by meshtrust (no label %s=%s); it is left untouched. To hand it over, annotate the Certificate with meshtrust.io/adopt: \"true\"", in.Target, ManagedByLabel, ManagedByValue), true
	}
	self := in.Certificate.Namespace + "/" + in.Certificate.Name
	if src := in.Existing.Annotations[SourceAnnotation]; src != "" && src != self {
		return ReasonOwnedByOther, fmt.Sprintf("Secret %s is fed by Certificate %s; annotate this Certificate with meshtrust.io/adopt: \"true\" to take it over", in.Target, src), true
	}
	return "", "", false
}

// SourceWithinSize refuses a source Secret whose data exceeds 1 MiB.
func SourceWithinSize(in Input) (string, string, bool) {
	n := SecretDataSize(in.Source)
	if n <= pki.MaxSecretSize {
		return "", "", false
	}
	return ReasonSourceTooLarge, fmt.Sprintf("Secret %s/%s holds %d bytes of data, over the %d byte limit", in.Source.Namespace, in.Source.Name, n, pki.MaxSecretSize), true
}

// BundleParses refuses a source Secret that does not parse as a CA bundle.
func BundleParses(in Input) (string, string, bool) {
	if in.BundleErr == nil {
		return "", "", false
	}
	return ReasonInvalidBundle, fmt.Sprintf("Secret %s/%s: %v", in.Source.Namespace, in.Source.Name, in.BundleErr), true
}

// BundleVerifies runs the istiod-equivalent checks and the lifetime guard.
func BundleVerifies(in Input) (string, string, bool) {
	if err := pki.Verify(in.Bundle, in.Now, in.WorkloadTTL); err != nil {
		return ReasonInvalidBundle, fmt.Sprintf("Secret %s/%s: %v", in.Source.Namespace, in.Source.Name, err), true
	}
	return "", "", false
}

// SecretDataSize is the total size of a Secret's keys and values.
func SecretDataSize(s *corev1.Secret) int {
	if s == nil {
		return 0
	}
	n := 0
	for k, v := range s.Data {
		n += len(k) + len(v)
	}
	for k, v := range s.StringData {
		n += len(k) + len(v)
	}
	return n
}

// RotateChain answers "must I trigger a renewal now?". A renewal already in
// progress is not this chain's business: the caller skips it then.
func RotateChain() Chain {
	return Chain{
		InsideLifetimeGuard,
		ScheduledSlotDue,
		ScheduledTriggerLost,
	}
}

// Guard is the remaining lifetime below which the intermediate must be renewed.
func (in Input) Guard() time.Duration { return in.WorkloadTTL + in.SafetyMargin }

// InsideLifetimeGuard fires when the issued certificate has less than one
// workload lifetime plus the margin left.
func InsideLifetimeGuard(in Input) (string, string, bool) {
	na := in.Certificate.Status.NotAfter
	if na == nil {
		return "", "", false
	}
	left := na.Sub(in.Now)
	if left > in.Guard() {
		return "", "", false
	}
	if in.Certificate.Status.LastFailureTime != nil {
		// cert-manager is backing off after a failed issuance; forcing it
		// again on every reconcile would hammer the issuer. The caller warns.
		return "", "", false
	}
	return ReasonLifetimeGuard, fmt.Sprintf("certificate expires at %s, in %s, less than the workload lifetime %s plus margin %s; triggering renewal", na.UTC().Format(time.RFC3339), left.Round(time.Second), in.WorkloadTTL, in.SafetyMargin), true
}

// ScheduledSlotDue fires when a schedule slot has passed since the last
// recorded one. Missed slots collapse into one renewal.
func ScheduledSlotDue(in Input) (string, string, bool) {
	slot, ok := DueSlot(in)
	if !ok {
		return "", "", false
	}
	return ReasonScheduled, fmt.Sprintf("scheduled rotation for slot %s (schedule %q)", slot.UTC().Format(time.RFC3339), in.Schedule.Spec), true
}

// ScheduledTriggerLost fires when a slot was recorded but the renewal it asked
// for never started: the revision is unchanged and cert-manager shows no
// Issuing condition at all. That happens if the controller died between
// recording the slot and setting the condition.
func ScheduledTriggerLost(in Input) (string, string, bool) {
	if in.Schedule == nil || !in.LastSlotRecorded || Revision(in.Certificate) != in.LastSlotRevision {
		return "", "", false
	}
	if c := Condition(in.Certificate, cmapi.CertificateConditionIssuing); c != nil {
		return "", "", false
	}
	return ReasonScheduledResumed, fmt.Sprintf("renewal for recorded slot %s did not start (revision still %d); triggering it", in.LastSlot.UTC().Format(time.RFC3339), in.LastSlotRevision), true
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
func RenewBeforeTooShort(in Input) (string, string, bool) {
	na, rt := in.Certificate.Status.NotAfter, in.Certificate.Status.RenewalTime
	if na == nil || rt == nil {
		return "", "", false
	}
	if left := na.Sub(rt.Time); left < in.Guard() {
		return ReasonRenewBeforeTooLow, fmt.Sprintf("cert-manager renews at %s, only %s before expiry; istiod needs at least the workload lifetime %s plus margin %s. Raise spec.renewBefore (or spec.duration)", rt.UTC().Format(time.RFC3339), left.Round(time.Second), in.WorkloadTTL, in.SafetyMargin), true
	}
	return "", "", false
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
func RenewalFailingInsideGuard(in Input) (string, string, bool) {
	na, lf := in.Certificate.Status.NotAfter, in.Certificate.Status.LastFailureTime
	if na == nil || lf == nil || na.Sub(in.Now) > in.Guard() {
		return "", "", false
	}
	return ReasonRenewalFailing, fmt.Sprintf("certificate expires at %s, inside the lifetime guard, and cert-manager's last issuance failed at %s; istiod will stop issuing valid workload certificates unless the issuer recovers", na.UTC().Format(time.RFC3339), lf.UTC().Format(time.RFC3339)), true
}
