package decision

import (
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshtrust/meshtrust/internal/meshconfig"
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
	// AllowedIssuers are the issuers whose Certificates may be installed
	// (--syncer-allowed-issuers).
	AllowedIssuers []IssuerRef
	// Mesh is what Istio's mesh ConfigMap in the target's namespace says
	// about trust domains; nil when it is absent or was not read.
	Mesh *meshconfig.TrustDomains
	// MeshSource names that ConfigMap ("namespace/name").
	MeshSource string
	// MeshErr is set when the ConfigMap is there but does not parse.
	MeshErr error
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

// Refusal is a write check's verdict against writing cacerts. It keeps the
// check that failed, so that the caller's event, condition and metric name
// it without asking again.
type Refusal struct {
	// Reason is the event and condition reason.
	Reason string
	// Check is the failed check, the metric label: internal/pki's check for
	// a bundle that fails parsing or verification, else Reason.
	Check string
	// Message names the object and the field at fault.
	Message string
	// Retry is true when the refusal may clear with time (a bundle
	// cert-manager is still rewriting), so the caller retries with backoff.
	Retry bool
}

func (r *Refusal) Error() string { return r.Message }

// refusal is a Refusal whose check is its reason.
func refusal(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Check: reason, Message: fmt.Sprintf(format, args...)}
}

// WriteCheck is one "may I write?" check; nil means it passes.
type WriteCheck func(Input) *Refusal

// WriteChecks run in order and stop at the first refusal.
type WriteChecks []WriteCheck

// Refusal returns the first check's refusal, or nil when every check passes.
func (c WriteChecks) Refusal(in Input) *Refusal {
	for _, f := range c {
		if r := f(in); r != nil {
			return r
		}
	}
	return nil
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
	ReasonIssuerNotAllowed  = "IssuerNotAllowed"
	ReasonUnconstrained     = "IntermediateNotNameConstrained"
	ReasonMeshTrustDomain   = "MeshTrustDomainMismatch"
	ReasonMeshUnreadable    = "MeshConfigUnreadable"
)

// WriteChain answers "may I write the bundle to cacerts?". IssuerAllowed
// is asked before it, and before any renewal: the syncer does nothing for a
// Certificate of another issuer.
func WriteChain() WriteChecks {
	return WriteChecks{
		TargetNamespaceAllowed,
		TargetNotForeign,
		TargetTypeFits,
		SourceWithinSize,
		BundleParses,
		BundleVerifies,
		IntermediateNameConstrained,
	}
}

// TargetNamespaceAllowed refuses targets outside --syncer-target-namespaces.
func TargetNamespaceAllowed(in Input) *Refusal {
	if in.TargetAllowed {
		return nil
	}
	return refusal(ReasonTargetNotAllowed, "target %s is in namespace %q, which --syncer-target-namespaces does not allow", in.Target, in.Target.Namespace)
}

// TargetNotForeign refuses to overwrite a cacerts Secret that meshtrust does
// not manage, unless adoption is asked for, or one that another Certificate
// feeds. Adoption takes over the latter only once that Certificate has let
// go: two adopting Certificates aimed at one Secret would otherwise
// overwrite each other on every renewal.
func TargetNotForeign(in Input) *Refusal {
	if in.Existing == nil {
		return nil
	}
	if in.Existing.Labels[ManagedByLabel] != ManagedByValue {
		if in.Adopt {
			return nil
		}
		return refusal(ReasonUnmanagedTarget, "Secret %s exists and is not managed by meshtrust (no label %s=%s); it is left untouched. To hand it over, annotate the Certificate with meshtrust.io/adopt: \"true\"", in.Target, ManagedByLabel, ManagedByValue)
	}
	self := in.Certificate.Namespace + "/" + in.Certificate.Name
	src := in.Existing.Annotations[SourceAnnotation]
	if src == "" || src == self {
		return nil
	}
	if !in.Adopt {
		return refusal(ReasonOwnedByOther, "Secret %s is fed by Certificate %s; to hand it over, remove the meshtrust.io/istio-cacerts annotation from %s (or delete it), then annotate this Certificate with meshtrust.io/adopt: \"true\"", in.Target, src, src)
	}
	if in.PreviousOwnerReleased {
		return nil
	}
	return refusal(ReasonOwnedByOther, "Secret %s is fed by Certificate %s, which still exists and opts in for it; meshtrust.io/adopt: \"true\" takes over only a Secret whose source Certificate is gone or no longer opts in. Remove the meshtrust.io/istio-cacerts annotation from %s (or delete it) first", in.Target, src, src)
}

// TargetTypeFits refuses an existing target whose Secret type cannot hold the
// layout. The type is immutable and the API server requires each built-in
// type's keys (kubernetes.io/tls: tls.crt and tls.key), so every update would
// fail; custom types require no keys.
func TargetTypeFits(in Input) *Refusal {
	if in.Existing == nil {
		return nil
	}
	t := in.Existing.Type
	switch {
	case t == "" || t == corev1.SecretTypeOpaque:
		return nil
	case t == corev1.SecretTypeTLS:
		if in.Layout == pki.LayoutTLS {
			return nil
		}
		return refusal(ReasonTargetType, "Secret %s has type %s, which requires tls.crt and tls.key and cannot be changed, so the %s layout (%s) cannot be written into it. Annotate the Certificate with meshtrust.io/istio-cacerts-layout: \"tls\", or delete the Secret so the syncer creates it as %s", in.Target, t, in.Layout, strings.Join(in.Layout.Keys(), ", "), corev1.SecretTypeOpaque)
	case strings.HasPrefix(string(t), "kubernetes.io/") || strings.HasPrefix(string(t), "bootstrap.kubernetes.io/"):
		return refusal(ReasonTargetType, "Secret %s has type %s, whose required keys no cacerts layout writes, and a Secret's type cannot be changed. Delete the Secret so the syncer creates it as %s", in.Target, t, corev1.SecretTypeOpaque)
	}
	return nil
}

// SourceWithinSize refuses a source Secret whose data exceeds 1 MiB.
func SourceWithinSize(in Input) *Refusal {
	n := SecretDataSize(in.Source)
	if n <= pki.MaxSecretSize {
		return nil
	}
	return &Refusal{Reason: ReasonSourceTooLarge, Check: string(pki.CheckSize), Retry: true,
		Message: fmt.Sprintf("Secret %s/%s holds %d bytes of data, over the %d byte limit", in.Source.Namespace, in.Source.Name, n, pki.MaxSecretSize)}
}

// BundleParses refuses a source Secret that does not parse as a CA bundle.
func BundleParses(in Input) *Refusal {
	if in.BundleErr == nil {
		return nil
	}
	return InvalidBundle(fmt.Sprintf("Secret %s/%s", in.Source.Namespace, in.Source.Name), in.BundleErr)
}

// BundleVerifies runs the istiod-equivalent checks and the lifetime guard.
func BundleVerifies(in Input) *Refusal {
	if err := pki.Verify(in.Bundle, in.Now, in.WorkloadTTL); err != nil {
		return InvalidBundle(fmt.Sprintf("Secret %s/%s", in.Source.Namespace, in.Source.Name), err)
	}
	return nil
}

// InvalidBundle refuses what, a bundle that fails internal/pki's parsing or
// verification with err, keeping the pki check that failed. It may clear
// once cert-manager rewrites the Secret, so it is retried.
func InvalidBundle(what string, err error) *Refusal {
	return &Refusal{Reason: ReasonInvalidBundle, Check: string(pki.CheckOf(err)), Retry: true, Message: fmt.Sprintf("%s: %v", what, err)}
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
