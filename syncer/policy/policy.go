package policy

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
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
	// Layout is the layout the bundle would be written in.
	Layout pki.Layout
	// Adopt is the Certificate's meshtrust.io/adopt annotation.
	Adopt bool
	// PreviousOwnerReleased reports that the Certificate named by Existing's
	// source annotation no longer exists, no longer opts in, or now targets
	// another Secret. The caller looks it up; only then may Adopt take over a
	// Secret another Certificate fed.
	PreviousOwnerReleased bool
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
	// GuardRecorded reports whether the lifetime guard ever triggered a
	// renewal; GuardRevision is the Certificate revision it triggered for and
	// GuardAt when.
	GuardRecorded bool
	GuardRevision int
	GuardAt       time.Time
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
	ReasonGuardResumed      = "LifetimeGuardResumed"
	ReasonLifetimeTooShort  = "LifetimeShorterThanGuard"
	ReasonRenewedInGuard    = "RenewedInsideGuard"
	ReasonTargetType        = "CACertsTypeMismatch"
	ReasonPreviousRoots     = "PreviousRootsUnusable"
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
		TargetTypeFits,
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
// not manage, unless adoption is asked for, or one that another Certificate
// feeds. Adoption takes over the latter only once that Certificate has let
// go: two adopting Certificates aimed at one Secret would otherwise
// overwrite each other on every renewal.
func TargetNotForeign(in Input) (string, string, bool) {
	if in.Existing == nil {
		return "", "", false
	}
	if in.Existing.Labels[ManagedByLabel] != ManagedByValue {
		if in.Adopt {
			return "", "", false
		}
		return ReasonUnmanagedTarget, fmt.Sprintf("Secret %s exists and is not managed by meshtrust (no label %s=%s); it is left untouched. To hand it over, annotate the Certificate with meshtrust.io/adopt: \"true\"", in.Target, ManagedByLabel, ManagedByValue), true
	}
	self := in.Certificate.Namespace + "/" + in.Certificate.Name
	src := in.Existing.Annotations[SourceAnnotation]
	if src == "" || src == self {
		return "", "", false
	}
	if !in.Adopt {
		return ReasonOwnedByOther, fmt.Sprintf("Secret %s is fed by Certificate %s; to hand it over, remove the meshtrust.io/istio-cacerts annotation from %s (or delete it), then annotate this Certificate with meshtrust.io/adopt: \"true\"", in.Target, src, src), true
	}
	if in.PreviousOwnerReleased {
		return "", "", false
	}
	return ReasonOwnedByOther, fmt.Sprintf("Secret %s is fed by Certificate %s, which still exists and opts in for it; meshtrust.io/adopt: \"true\" takes over only a Secret whose source Certificate is gone or no longer opts in. Remove the meshtrust.io/istio-cacerts annotation from %s (or delete it) first", in.Target, src, src), true
}

// TargetTypeFits refuses an existing target whose Secret type cannot hold the
// layout. The type is immutable and the API server requires each built-in
// type's keys (kubernetes.io/tls: tls.crt and tls.key), so every update would
// fail; custom types require no keys.
func TargetTypeFits(in Input) (string, string, bool) {
	if in.Existing == nil {
		return "", "", false
	}
	t := in.Existing.Type
	switch {
	case t == "" || t == corev1.SecretTypeOpaque:
		return "", "", false
	case t == corev1.SecretTypeTLS:
		if in.Layout == pki.LayoutTLS {
			return "", "", false
		}
		return ReasonTargetType, fmt.Sprintf("Secret %s has type %s, which requires tls.crt and tls.key and cannot be changed, so the %s layout (%s) cannot be written into it. Annotate the Certificate with meshtrust.io/istio-cacerts-layout: \"tls\", or delete the Secret so the syncer creates it as %s", in.Target, t, in.Layout, strings.Join(in.Layout.Keys(), ", "), corev1.SecretTypeOpaque), true
	case strings.HasPrefix(string(t), "kubernetes.io/") || strings.HasPrefix(string(t), "bootstrap.kubernetes.io/"):
		return ReasonTargetType, fmt.Sprintf("Secret %s has type %s, whose required keys no cacerts layout writes, and a Secret's type cannot be changed. Delete the Secret so the syncer creates it as %s", in.Target, t, corev1.SecretTypeOpaque), true
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
func InsideLifetimeGuard(in Input) (string, string, bool) {
	left, inside := insideGuard(in)
	if !inside {
		return "", "", false
	}
	if in.Certificate.Status.LastFailureTime != nil {
		// cert-manager is backing off after a failed issuance; forcing it
		// again on every reconcile would hammer the issuer. The caller warns.
		return "", "", false
	}
	if _, short := lifetimeTooShort(in); short || renewedInsideGuard(in) {
		return "", "", false
	}
	if in.GuardRecorded && in.GuardRevision == Revision(in.Certificate) {
		// Already asked for this revision (GuardTriggerLost re-sends a
		// trigger that never reached the API server).
		return "", "", false
	}
	na := in.Certificate.Status.NotAfter
	return ReasonLifetimeGuard, fmt.Sprintf("certificate expires at %s, in %s, less than the workload lifetime %s plus margin %s; triggering renewal", na.UTC().Format(time.RFC3339), left.Round(time.Second), in.WorkloadTTL, in.SafetyMargin), true
}

// GuardTriggerLost fires when the guard recorded a trigger for the current
// revision but cert-manager shows no Issuing condition at all: the
// controller died between recording and setting the condition, so
// cert-manager never saw the first one.
func GuardTriggerLost(in Input) (string, string, bool) {
	if !in.GuardRecorded || in.GuardRevision != Revision(in.Certificate) {
		return "", "", false
	}
	if Condition(in.Certificate, cmapi.CertificateConditionIssuing) != nil || in.Certificate.Status.LastFailureTime != nil {
		return "", "", false
	}
	if _, inside := insideGuard(in); !inside {
		return "", "", false
	}
	return ReasonGuardResumed, fmt.Sprintf("lifetime-guard renewal recorded at %s for revision %d did not start; triggering it", in.GuardAt.UTC().Format(time.RFC3339), in.GuardRevision), true
}

// LifetimeShorterThanGuard warns when the certificate's whole lifetime is
// not longer than the guard: it is inside the guard from issuance, so the
// guard never renews it and only a configuration change helps.
func LifetimeShorterThanGuard(in Input) (string, string, bool) {
	life, short := lifetimeTooShort(in)
	if !short {
		return "", "", false
	}
	return ReasonLifetimeTooShort, fmt.Sprintf("certificate lifetime %s is not longer than the lifetime guard %s (workload lifetime %s, --syncer-workload-cert-ttl, plus margin %s, --syncer-safety-margin, plus %s issuance slack): it is inside the guard from the moment it is issued, so the syncer does not trigger renewals for it. Raise the Certificate's spec.duration, and the issuer's cap on it (Vault role or PKI mount max TTL), above %s, or lower --syncer-workload-cert-ttl",
		life.Round(time.Second), in.Guard(), in.WorkloadTTL, in.SafetyMargin, IssuanceSlack, in.Guard()+IssuanceSlack), true
}

// RenewedInsideGuard warns when the certificate issued after a guard
// trigger is itself inside the guard, typically because the issuer caps its
// notAfter (its own CA expires soon).
func RenewedInsideGuard(in Input) (string, string, bool) {
	if _, inside := insideGuard(in); !inside || !renewedInsideGuard(in) {
		return "", "", false
	}
	if _, short := lifetimeTooShort(in); short {
		return "", "", false // LifetimeShorterThanGuard says it better
	}
	return ReasonRenewedInGuard, fmt.Sprintf("revision %d, issued after the lifetime guard triggered at %s for revision %d, expires at %s, still within the guard %s; not renewing again. The issuer caps its lifetime: renew or extend the issuing CA (or raise the Vault max TTL), then renew the Certificate",
		Revision(in.Certificate), in.GuardAt.UTC().Format(time.RFC3339), in.GuardRevision, in.Certificate.Status.NotAfter.UTC().Format(time.RFC3339), in.Guard()), true
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
