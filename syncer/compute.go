package syncer

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer/policy"
)

// Input is what the reconciler gathered for one Certificate.
type Input struct {
	// Now is the injected clock's time.
	Now time.Time
	// Options are the controller's options (defaults filled).
	Options Options
	// Certificate is the opted-in Certificate.
	Certificate *cmapi.Certificate
	// Source is cert-manager's Secret (spec.secretName), nil if absent.
	Source *corev1.Secret
	// Existing is the current target Secret, nil if absent.
	Existing *corev1.Secret
	// Deployment is the restart-after-sync target, nil if absent or unset.
	Deployment *appsv1.Deployment
	// PreviousOwnerReleased reports that the Certificate named by Existing's
	// source annotation is gone, no longer opts in, or targets another
	// Secret (see policy.Input).
	PreviousOwnerReleased bool
}

// Event is a Kubernetes event to record on the Certificate.
type Event struct {
	Type, Reason, Message string
}

func (e Event) String() string { return e.Type + " " + e.Reason + " " + e.Message }

// Renewal asks cert-manager to re-issue, by setting Issuing=True.
type Renewal struct {
	Reason, Message string
}

// ConditionCACertsSynced is the Certificate condition the syncer owns: True
// when cacerts holds the Certificate's current bundle, False with the refusal
// reason otherwise.
const ConditionCACertsSynced cmapi.CertificateConditionType = "CACertsSynced"

// Condition is the desired CACertsSynced condition.
type Condition struct {
	Status          cmmeta.ConditionStatus
	Reason, Message string
}

// SlotRecord is the scheduled-rotation record to store on the Certificate.
type SlotRecord struct {
	Slot     time.Time
	Revision int
}

// GuardRecord is the lifetime-guard trigger to store on the Certificate.
type GuardRecord struct {
	Revision int
	At       time.Time
}

// Plan is what Compute decided; Apply carries it out.
type Plan struct {
	// Target is the cacerts Secret's name.
	Target types.NamespacedName
	// Secret is the complete cacerts Secret to write, nil for no write. For
	// an update its ResourceVersion is the one read, so a concurrent change
	// makes the write fail instead of clobbering.
	Secret *corev1.Secret
	// Create is true when Secret must be created rather than updated.
	Create bool
	// Renew, when set, triggers a renewal of the Certificate.
	Renew *Renewal
	// Record, when set, stores the scheduled-rotation slot on the Certificate.
	Record *SlotRecord
	// Guard, when set, stores the lifetime-guard trigger on the Certificate.
	Guard *GuardRecord
	// Restart names a Deployment in Target's namespace to restart, with the
	// content checksum it is restarted for.
	Restart, Checksum string
	// Events are warnings and notices to record whatever Apply does.
	Events []Event
	// Condition is the CACertsSynced condition to show on the Certificate
	// once the plan is applied; nil leaves it as it is.
	Condition *Condition
	// Result is the sync result for metrics.
	Result string
	// FailedCheck names the failed check when Result is refused.
	FailedCheck string
	// Retry is set when the refusal may clear with time and should be
	// retried with backoff.
	Retry error
	// Expiry and Roots describe the bundle now in cacerts (zero if unknown).
	Expiry time.Time
	Roots  int
	// RequeueAfter is when the next time-driven decision falls due.
	RequeueAfter time.Duration
}

// UnwatchedTargetRecheck is how often a target Secret that is not named
// like the default (and so not watched) is checked.
const UnwatchedTargetRecheck = 10 * time.Minute

// Compute decides what to do for one Certificate. It is pure: the same Input
// always gives the same Plan.
func Compute(in Input) Plan {
	crt := in.Certificate
	p := Plan{}
	settings, err := ParseSettings(crt, in.Options.SecretName)
	p.Target = settings.Target
	if err != nil {
		p.refuse(policy.ReasonInvalidAnnotation, err.Error(), policy.ReasonInvalidAnnotation, nil)
		return p
	}

	pin := policy.Input{
		Now:                   in.Now,
		Certificate:           crt,
		Source:                in.Source,
		Target:                settings.Target,
		Existing:              in.Existing,
		TargetAllowed:         in.Options.targetAllowed(crt.Namespace, settings.Target.Namespace),
		Layout:                settings.Layout,
		Adopt:                 settings.Adopt,
		PreviousOwnerReleased: in.PreviousOwnerReleased,
		WorkloadTTL:           in.Options.WorkloadCertTTL,
		SafetyMargin:          in.Options.SafetyMargin,
		Schedule:              settings.Schedule,
		LastSlot:              settings.LastSlot,
		LastSlotRecorded:      settings.LastSlotRecorded,
		LastSlotRevision:      settings.LastSlotRevision,
		GuardRecorded:         settings.GuardRecorded,
		GuardRevision:         settings.GuardRevision,
		GuardAt:               settings.GuardAt,
	}
	if in.Source != nil {
		// Parsed before the rotation decisions: the lifetime guard falls
		// back to the certificate's own validity when the status lacks it.
		pin.Bundle, pin.BundleErr = pki.ParseTLS(in.Source.Data)
	}
	p.rotation(pin)
	if settings.Target.Name != in.Options.SecretName {
		// Only Secrets with the default name are watched; one named
		// otherwise is put right (recreated, or its edits undone) on
		// this schedule instead of at once.
		p.requeue(in.Now.Add(UnwatchedTargetRecheck), in.Now)
	}

	if in.Source == nil {
		p.Result = ResultPending
		return p
	}
	if reason, msg, failed := policy.WriteChain().Evaluate(pin); failed {
		var retry error
		check := reason
		if reason == policy.ReasonInvalidBundle || reason == policy.ReasonSourceTooLarge {
			retry = errors.New(msg)
			if c := checkOf(pin); c != "" {
				check = c
			}
		}
		p.refuse(reason, msg, check, retry)
		return p
	}
	p.write(in, settings, pin.Bundle)
	return p
}

func checkOf(pin policy.Input) string {
	if pin.BundleErr != nil {
		return string(pki.CheckOf(pin.BundleErr))
	}
	if pin.Bundle != nil {
		return string(pki.CheckOf(pki.Verify(pin.Bundle, pin.Now, pin.WorkloadTTL)))
	}
	return ""
}

func (p *Plan) refuse(reason, msg, check string, retry error) {
	p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: reason, Message: msg})
	p.Condition = &Condition{Status: cmmeta.ConditionFalse, Reason: reason, Message: msg}
	p.Result = ResultRefused
	p.FailedCheck = check
	p.Retry = retry
}

func (p *Plan) requeue(at, now time.Time) {
	if at.IsZero() || !at.After(now) {
		return
	}
	if d := at.Sub(now); p.RequeueAfter == 0 || d < p.RequeueAfter {
		p.RequeueAfter = d
	}
}

// rotation decides renewals and the scheduled-rotation record.
func (p *Plan) rotation(pin policy.Input) {
	crt := pin.Certificate
	for _, check := range []policy.Func{policy.RenewBeforeTooShort, policy.RenewalFailingInsideGuard, policy.LifetimeShorterThanGuard, policy.RenewedInsideGuard} {
		if reason, msg, warn := check(pin); warn {
			p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: reason, Message: msg})
		}
	}
	slot, due := policy.DueSlot(pin)
	if due {
		p.Record = &SlotRecord{Slot: slot, Revision: policy.Revision(crt)}
	}
	if !policy.Issuing(crt) {
		if reason, msg, must := policy.RotateChain().Evaluate(pin); must {
			p.Renew = &Renewal{Reason: reason, Message: msg}
			if reason == policy.ReasonLifetimeGuard {
				p.Guard = &GuardRecord{Revision: policy.Revision(crt), At: pin.Now}
			}
		}
	} else if due {
		p.Events = append(p.Events, Event{Type: corev1.EventTypeNormal, Reason: policy.ReasonScheduled,
			Message: fmt.Sprintf("slot %s recorded; a renewal is already in progress", slot.UTC().Format(time.RFC3339))})
	}

	if pin.Schedule != nil {
		since := pin.LastSlot
		if !pin.LastSlotRecorded {
			since = policy.Baseline(crt)
		}
		if due {
			since = slot
		}
		p.requeue(pin.Schedule.NextFire(since, pin.Now), pin.Now)
	}
	if na := crt.Status.NotAfter; na != nil {
		p.requeue(na.Add(-pin.Guard()), pin.Now)
	}
}

// write builds the cacerts Secret from a verified bundle.
func (p *Plan) write(in Input, s Settings, b *pki.Bundle) {
	now := in.Now
	existing := in.Existing
	srcFPs := strings.Join(pki.Fingerprints(b.Roots), ",")

	// Root transition: keep the previous root file verbatim at the start for
	// the grace period, so istiod accepts the new file and peers that still
	// present old-root chains keep verifying.
	var changedAt time.Time
	prevKey, prevPEM, prev, err := previousRoots(existing)
	if err != nil {
		p.refusePreviousRoots(fmt.Sprintf("%s of Secret %s does not parse: %v", prevKey, p.Target, err),
			fmt.Sprintf("Make %s hold only PEM certificates, with no other text, or delete the Secret", prevKey), err)
		return
	}
	if prev != nil {
		// Even when no root was dropped, roots may have been added or
		// reordered (the issuer lists the signing root first, so a cluster
		// moving to a new root reorders them). istiod accepts a new root
		// file only if it contains the old one byte for byte, so the old
		// bytes stay first and only what is new is appended. Dropped roots
		// are kept that way for the grace period.
		dropped := policy.RootsChanged(prev, b.Roots)
		keep, end := !dropped, time.Time{}
		if dropped {
			changedAt = now
			if existing.Annotations[AnnotationSourceRootFPs] == srcFPs {
				if t, err := time.Parse(time.RFC3339, existing.Annotations[AnnotationRootsChangedAt]); err == nil {
					changedAt = t
				}
			}
			end = changedAt.Add(s.RootGrace)
			keep = now.Before(end)
		}
		if keep {
			merged, all, err := pki.MergeRoots(prevPEM, b.Roots)
			if err != nil {
				// Writing without the old bytes would drop roots with no
				// grace, and istiod would reject the file anyway.
				p.refusePreviousRoots(fmt.Sprintf("merging the previous roots in %s of Secret %s with the new ones fails: %v", prevKey, p.Target, err),
					fmt.Sprintf("Remove roots no longer trusted from %s, or delete the Secret", prevKey), err)
				return
			}
			b.RootsPEM, b.Roots = merged, all
			if dropped {
				p.requeue(end, now)
			}
		} else {
			changedAt = time.Time{}
		}
	}

	data, err := b.Data(s.Layout)
	if err == nil {
		// Verify what will be written, parsed back the way istiod reads it.
		var out *pki.Bundle
		if out, err = pki.Parse(s.Layout, data); err == nil {
			err = pki.Verify(out, now, in.Options.WorkloadCertTTL)
		}
	}
	if err != nil {
		p.refuse(policy.ReasonInvalidBundle, fmt.Sprintf("rendered %s layout fails validation: %v", s.Layout, err), string(pki.CheckOf(err)), err)
		return
	}

	sum := checksum(data)
	ann := map[string]string{
		AnnotationSource:          in.Certificate.Namespace + "/" + in.Certificate.Name,
		AnnotationSourceRevision:  strconv.Itoa(policy.Revision(in.Certificate)),
		AnnotationSerial:          b.Cert.SerialNumber.Text(16),
		AnnotationNotAfter:        b.Cert.NotAfter.UTC().Format(time.RFC3339),
		AnnotationRootFPs:         strings.Join(pki.Fingerprints(b.Roots), ","),
		AnnotationSourceRootFPs:   srcFPs,
		AnnotationLayoutWritten:   string(s.Layout),
		AnnotationContentChecksum: sum,
	}
	if !changedAt.IsZero() {
		ann[AnnotationRootsChangedAt] = changedAt.UTC().Format(time.RFC3339)
	}
	p.Expiry, p.Roots = b.Cert.NotAfter, len(b.Roots)
	p.Condition = &Condition{Status: cmmeta.ConditionTrue, Reason: "Synced", Message: fmt.Sprintf("%s holds serial %s (notAfter %s, %d roots, layout %s)",
		p.Target, ann[AnnotationSerial], ann[AnnotationNotAfter], len(b.Roots), s.Layout)}
	p.Checksum = sum
	if s.RestartTarget != "" {
		switch {
		case in.Deployment == nil:
			p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: "RestartTargetMissing",
				Message: fmt.Sprintf("annotation %s names deployment/%s, which does not exist in namespace %s", AnnotationRestartAfterSync, s.RestartTarget, p.Target.Namespace)})
		case in.Deployment.Spec.Template.Annotations[ChecksumPodAnnotation] != sum:
			p.Restart = s.RestartTarget
		}
	}

	if existing != nil && upToDate(existing, data, ann) {
		p.Result = ResultUnchanged
		return
	}
	var sec *corev1.Secret
	if existing == nil {
		p.Create = true
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Target.Namespace, Name: p.Target.Name},
			Type:       corev1.SecretTypeOpaque,
		}
	} else {
		// Keep the resourceVersion read: the update fails on any concurrent
		// change, so an unmanaged Secret that appeared meanwhile is never
		// overwritten. The type is immutable, so it is kept too.
		sec = existing.DeepCopy()
		sec.ManagedFields = nil
		if sec.Type == "" {
			sec.Type = corev1.SecretTypeOpaque
		}
	}
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	sec.Labels[policy.ManagedByLabel] = policy.ManagedByValue
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	delete(sec.Annotations, AnnotationRootsChangedAt)
	maps.Copy(sec.Annotations, ann)
	sec.Annotations[AnnotationSyncedAt] = now.UTC().Format(time.RFC3339)
	sec.Data = data
	sec.StringData = nil
	p.Secret = sec
	p.Result = ResultSynced
}

// previousRoots returns the key holding the root file of the current
// cacerts (either layout), its bytes and its certificates; all empty if there
// is none. The error says why a root file that is there does not parse.
func previousRoots(existing *corev1.Secret) (string, []byte, []*x509.Certificate, error) {
	if existing == nil {
		return "", nil, nil, nil
	}
	for _, k := range []string{pki.RootCertKey, pki.CACertBundleKey} {
		if raw := existing.Data[k]; len(bytes.TrimSpace(raw)) > 0 {
			certs, err := pki.DecodeCertificates(raw, pki.MaxRootBundlePEMSize)
			if err != nil {
				return k, nil, nil, err
			}
			return k, raw, certs, nil
		}
	}
	return "", nil, nil, nil
}

// refusePreviousRoots refuses a write that could not keep the roots now in
// cacerts. istiod (<= 1.30) accepts a new root file only if it contains the
// old file's bytes, and peers still presenting old-root chains need the old
// roots for the grace period; so cacerts stays as it is until someone fixes
// or deletes it. Retried, because an edit to a target under a custom name
// brings no watch event.
func (p *Plan) refusePreviousRoots(why, fix string, err error) {
	msg := why + "; the Secret is left untouched because its roots cannot be carried over (istiod <= 1.30 accepts a new root file only if it contains the old one). " + fix
	p.refuse(policy.ReasonPreviousRoots, msg, policy.ReasonPreviousRoots, fmt.Errorf("keep previous roots of %s: %w", p.Target, err))
}

// upToDate reports whether existing already holds exactly data, the label
// and the annotations (synced-at aside).
func upToDate(existing *corev1.Secret, data map[string][]byte, ann map[string]string) bool {
	if existing.Labels[policy.ManagedByLabel] != policy.ManagedByValue || len(existing.Data) != len(data) {
		return false
	}
	for k, v := range data {
		if old, ok := existing.Data[k]; !ok || !bytes.Equal(old, v) {
			return false
		}
	}
	for k, v := range ann {
		if existing.Annotations[k] != v {
			return false
		}
	}
	_, grace := ann[AnnotationRootsChangedAt]
	_, hadGrace := existing.Annotations[AnnotationRootsChangedAt]
	return grace == hadGrace
}

// checksum identifies the certificates written (not the key), so it can sit
// in a pod-template annotation.
func checksum(data map[string][]byte) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if k == pki.CAKeyKey || k == pki.TLSKeyKey {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", k, len(data[k]))
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
