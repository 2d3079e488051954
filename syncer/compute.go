package syncer

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
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

	"github.com/meshtrust/meshtrust/internal/meshconfig"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer/decision"
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
	// Secret (see decision.Input).
	PreviousOwnerReleased bool
	// Exchange is the CRL exchange ConfigMap of the Certificate's
	// VaultClusterIssuer, nil if absent or if the issuer is not one.
	Exchange *corev1.ConfigMap
	// SignCRL signs this cluster's own intermediates' CRLs; nil signs none.
	SignCRL CRLSigner
	// Mesh, MeshSource and MeshErr are Istio's mesh ConfigMap in the
	// target's namespace (see decision.Input).
	Mesh       *meshconfig.TrustDomains
	MeshSource string
	MeshErr    error
}

// Event is a Kubernetes event to record on the Certificate.
type Event struct {
	Type, Reason, Message string
}

func (e Event) String() string { return e.Type + " " + e.Reason + " " + e.Message }

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
	// Renew, when set, triggers a renewal of the Certificate (Issuing=True,
	// as cmctl renew sets it).
	Renew *decision.Renewal
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
	// Refusal is why Result is refused: the failed check, the reason and
	// the message; nil otherwise.
	Refusal *decision.Refusal
	// Expiry and Roots describe the bundle now in cacerts (zero if unknown).
	Expiry time.Time
	Roots  int
	// RequeueAfter is when the next time-driven decision falls due.
	RequeueAfter time.Duration

	// crl is what was decided about ca-crl.pem and the CRLs this cluster
	// publishes.
	crl crlPlan
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
		p.refuse(&decision.Refusal{Reason: decision.ReasonInvalidAnnotation, Check: decision.ReasonInvalidAnnotation, Message: err.Error()})
		return p
	}

	pin := decision.Input{
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
		AllowedIssuers:        in.Options.allowedIssuers,
		Mesh:                  in.Mesh,
		MeshSource:            in.MeshSource,
		MeshErr:               in.MeshErr,
	}
	if r := decision.IssuerAllowed(pin); r != nil {
		// Not even a renewal: a Certificate of another issuer is none of
		// the syncer's business beyond saying so.
		p.refuse(r)
		return p
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
	if r := decision.WriteChain().Refusal(pin); r != nil {
		p.refuse(r)
		return p
	}
	p.write(in, settings, pin.Bundle)
	return p
}

// refuse records a refusal: a Warning event, the condition and the result.
func (p *Plan) refuse(r *decision.Refusal) {
	p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: r.Reason, Message: r.Message})
	p.Condition = &Condition{Status: cmmeta.ConditionFalse, Reason: r.Reason, Message: r.Message}
	p.Result = ResultRefused
	p.Refusal = r
}

// FailedCheck names the failed check of a refused plan, "" otherwise.
func (p Plan) FailedCheck() string {
	if p.Refusal == nil {
		return ""
	}
	return p.Refusal.Check
}

// Retry is the error to retry a refusal that may clear with time, nil
// otherwise.
func (p Plan) Retry() error {
	if p.Refusal == nil || !p.Refusal.Retry {
		return nil
	}
	return p.Refusal
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
func (p *Plan) rotation(pin decision.Input) {
	crt := pin.Certificate
	for _, w := range decision.Warnings(pin) {
		p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: w.Reason, Message: w.Message})
	}
	slot, due := decision.DueSlot(pin)
	if due {
		p.Record = &SlotRecord{Slot: slot, Revision: decision.Revision(crt)}
	}
	if !decision.Issuing(crt) {
		if r := decision.RotateChain().Renewal(pin); r != nil {
			p.Renew = r
			if r.Reason == decision.ReasonLifetimeGuard {
				p.Guard = &GuardRecord{Revision: decision.Revision(crt), At: pin.Now}
			}
		}
	} else if due {
		p.Events = append(p.Events, Event{Type: corev1.EventTypeNormal, Reason: decision.ReasonScheduled,
			Message: fmt.Sprintf("slot %s recorded; a renewal is already in progress", slot.UTC().Format(time.RFC3339))})
	}

	if pin.Schedule != nil {
		since := pin.LastSlot
		if !pin.LastSlotRecorded {
			since = decision.Baseline(crt)
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

// write builds the cacerts Secret from a verified bundle: carry the roots
// over a root transition, render and re-verify the layout, stamp it, plan
// the restart, and decide between create, update and nothing.
func (p *Plan) write(in Input, s Settings, b *pki.Bundle) {
	now := in.Now
	srcFPs := strings.Join(pki.Fingerprints(b.Roots), ",")
	changedAt, r := p.carryRoots(in.Existing, s, b, srcFPs, now)
	if r != nil {
		p.refuse(r)
		return
	}
	data, err := render(s.Layout, b, now, in.Options.WorkloadCertTTL)
	if err != nil {
		p.refuse(&decision.Refusal{Reason: decision.ReasonInvalidBundle, Check: string(pki.CheckOf(err)), Retry: true,
			Message: fmt.Sprintf("rendered %s layout fails validation: %v", s.Layout, err)})
		return
	}
	p.crl = planCRL(crlInputFor(in, s, b))
	p.Events = append(p.Events, p.crl.events...)
	if r := p.crl.refusal; r != nil {
		p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: r.Reason, Message: r.Message})
	}
	if p.crl.hold != nil {
		p.holdForCRL(in)
		return
	}
	if p.crl.pem != nil {
		data[pki.CRLKey] = p.crl.pem
	}
	sum := checksum(data)
	ann := stamp(in.Certificate, b, s.Layout, srcFPs, sum, changedAt)
	p.Expiry, p.Roots = b.Cert.NotAfter, len(b.Roots)
	p.Condition = &Condition{Status: cmmeta.ConditionTrue, Reason: "Synced", Message: fmt.Sprintf("%s holds serial %s (notAfter %s, %d roots, layout %s)",
		p.Target, ann[AnnotationSerial], ann[AnnotationNotAfter], len(b.Roots), s.Layout)}
	p.Checksum = sum
	p.planRestart(in.Deployment, s.RestartTarget, sum)
	if in.Existing != nil && upToDate(in.Existing, data, ann) {
		p.Result = ResultUnchanged
		return
	}
	p.Secret, p.Create = secretFor(in.Existing, p.Target, data, ann, now), in.Existing == nil
	p.Result = ResultSynced
}

// carryRoots keeps a root transition safe: the previous root file stays
// verbatim at the start for the grace period, so istiod accepts the new
// file and peers that still present old-root chains keep verifying. It
// merges into b and returns when the roots changed (zero when no grace runs).
func (p *Plan) carryRoots(existing *corev1.Secret, s Settings, b *pki.Bundle, srcFPs string, now time.Time) (time.Time, *decision.Refusal) {
	prevKey, prevPEM, prev, err := previousRoots(existing)
	if err != nil {
		return time.Time{}, p.previousRootsUnusable(fmt.Sprintf("%s of Secret %s does not parse: %v", prevKey, p.Target, err),
			fmt.Sprintf("Make %s hold only PEM certificates, with no other text, or delete the Secret", prevKey))
	}
	if prev == nil {
		return time.Time{}, nil
	}
	// Even when no root was dropped, roots may have been added or
	// reordered (the issuer lists the signing root first, so a cluster
	// moving to a new root reorders them). istiod accepts a new root file
	// only if it contains the old one byte for byte, so the old bytes stay
	// first and only what is new is appended. Dropped roots are kept that
	// way for the grace period.
	dropped := decision.RootsChanged(prev, b.Roots)
	var changedAt, end time.Time
	keep := !dropped
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
	if !keep {
		return time.Time{}, nil
	}
	merged, all, err := pki.MergeRoots(prevPEM, b.Roots)
	if err != nil {
		// Writing without the old bytes would drop roots with no grace,
		// and istiod would reject the file anyway.
		return time.Time{}, p.previousRootsUnusable(fmt.Sprintf("merging the previous roots in %s of Secret %s with the new ones fails: %v", prevKey, p.Target, err),
			fmt.Sprintf("Remove roots no longer trusted from %s, or delete the Secret", prevKey))
	}
	b.RootsPEM, b.Roots = merged, all
	if dropped {
		p.requeue(end, now)
	}
	return changedAt, nil
}

// render renders the bundle in the layout and verifies what will be
// written, parsed back the way istiod reads it.
func render(layout pki.Layout, b *pki.Bundle, now time.Time, workloadTTL time.Duration) (map[string][]byte, error) {
	data, err := b.Data(layout)
	if err != nil {
		return nil, err
	}
	out, err := pki.Parse(layout, data)
	if err == nil {
		err = pki.Verify(out, now, workloadTTL)
	}
	return data, err
}

// stamp is the annotations that say what cacerts holds and where it came from.
func stamp(crt *cmapi.Certificate, b *pki.Bundle, layout pki.Layout, srcFPs, sum string, changedAt time.Time) map[string]string {
	ann := map[string]string{
		AnnotationSource:          crt.Namespace + "/" + crt.Name,
		AnnotationSourceRevision:  strconv.Itoa(decision.Revision(crt)),
		AnnotationSerial:          b.Cert.SerialNumber.Text(16),
		AnnotationNotAfter:        b.Cert.NotAfter.UTC().Format(time.RFC3339),
		AnnotationRootFPs:         strings.Join(pki.Fingerprints(b.Roots), ","),
		AnnotationSourceRootFPs:   srcFPs,
		AnnotationLayoutWritten:   string(layout),
		AnnotationContentChecksum: sum,
	}
	if !changedAt.IsZero() {
		ann[AnnotationRootsChangedAt] = changedAt.UTC().Format(time.RFC3339)
	}
	return ann
}

// planRestart restarts the annotation's Deployment when its pods were not
// started for this content.
func (p *Plan) planRestart(dep *appsv1.Deployment, target, sum string) {
	switch {
	case target == "":
	case dep == nil:
		p.Events = append(p.Events, Event{Type: corev1.EventTypeWarning, Reason: "RestartTargetMissing",
			Message: fmt.Sprintf("annotation %s names deployment/%s, which does not exist in namespace %s", AnnotationRestartAfterSync, target, p.Target.Namespace)})
	case dep.Spec.Template.Annotations[ChecksumPodAnnotation] != sum:
		p.Restart = target
	}
}

// secretFor is the complete cacerts Secret to write over existing (nil: to
// create).
func secretFor(existing *corev1.Secret, target types.NamespacedName, data map[string][]byte, ann map[string]string, now time.Time) *corev1.Secret {
	var sec *corev1.Secret
	if existing == nil {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: target.Namespace, Name: target.Name},
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
	sec.Labels[decision.ManagedByLabel] = decision.ManagedByValue
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	delete(sec.Annotations, AnnotationRootsChangedAt)
	maps.Copy(sec.Annotations, ann)
	sec.Annotations[AnnotationSyncedAt] = now.UTC().Format(time.RFC3339)
	sec.Data = data
	sec.StringData = nil
	return sec
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

// previousRootsUnusable refuses a write that could not keep the roots now
// in cacerts. istiod (<= 1.30) accepts a new root file only if it contains
// the old file's bytes, and peers still presenting old-root chains need the
// old roots for the grace period; so cacerts stays as it is until someone
// fixes or deletes it. Retried, because an edit to a target under a custom
// name brings no watch event.
func (p *Plan) previousRootsUnusable(why, fix string) *decision.Refusal {
	msg := why + "; the Secret is left untouched because its roots cannot be carried over (istiod <= 1.30 accepts a new root file only if it contains the old one). " + fix
	return &decision.Refusal{Reason: decision.ReasonPreviousRoots, Check: decision.ReasonPreviousRoots, Message: msg, Retry: true}
}

// upToDate reports whether existing already holds exactly data, the label
// and the annotations (synced-at aside).
func upToDate(existing *corev1.Secret, data map[string][]byte, ann map[string]string) bool {
	if existing.Labels[decision.ManagedByLabel] != decision.ManagedByValue || len(existing.Data) != len(data) {
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
