package syncer

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// Annotations on a Certificate.
const (
	// AnnotationOptIn turns the syncer on for a Certificate ("true").
	AnnotationOptIn = "meshtrust.io/istio-cacerts"
	// AnnotationTarget is "<namespace>/<name>" of the Secret to write.
	AnnotationTarget = "meshtrust.io/istio-cacerts-target"
	// AnnotationLayout is "istio" (default) or "tls".
	AnnotationLayout = "meshtrust.io/istio-cacerts-layout"
	// AnnotationAdopt lets the syncer take over an existing cacerts ("true").
	AnnotationAdopt = "meshtrust.io/adopt"
	// AnnotationRootGrace is how long old roots stay in root-cert.pem after a
	// root change (Go duration; default 720h).
	AnnotationRootGrace = "meshtrust.io/root-grace"
	// AnnotationRotationSchedule is a 5-field cron expression (UTC).
	AnnotationRotationSchedule = "meshtrust.io/rotation-schedule"
	// AnnotationRotationJitter is the maximum random delay after each slot.
	AnnotationRotationJitter = "meshtrust.io/rotation-jitter"
	// AnnotationRestartAfterSync is "deployment/<name>" in the target namespace.
	AnnotationRestartAfterSync = "meshtrust.io/restart-after-sync"
	// AnnotationLastRotation records the last scheduled-rotation slot
	// (RFC 3339), written by the syncer.
	AnnotationLastRotation = "meshtrust.io/last-scheduled-rotation"
	// AnnotationLastRotationRevision records the Certificate's revision when
	// that slot was recorded, written by the syncer.
	AnnotationLastRotationRevision = "meshtrust.io/last-scheduled-rotation-revision"
	// AnnotationGuardRevision records the Certificate revision the lifetime
	// guard last triggered a renewal for, written by the syncer, so it
	// triggers at most once per revision, across restarts too.
	AnnotationGuardRevision = "meshtrust.io/lifetime-guard-revision"
	// AnnotationGuardAt records when that trigger happened (RFC 3339): a
	// certificate issued after it that still expires within the guard of it
	// shows that renewing does not help.
	AnnotationGuardAt = "meshtrust.io/lifetime-guard-triggered-at"
)

// Annotations on a cacerts Secret, written by the syncer.
const (
	AnnotationSource          = decision.SourceAnnotation
	AnnotationSourceRevision  = "meshtrust.io/source-revision"
	AnnotationSerial          = "meshtrust.io/serial"
	AnnotationNotAfter        = "meshtrust.io/not-after"
	AnnotationRootFPs         = "meshtrust.io/root-fingerprints"
	AnnotationSourceRootFPs   = "meshtrust.io/source-root-fingerprints"
	AnnotationRootsChangedAt  = "meshtrust.io/roots-changed-at"
	AnnotationSyncedAt        = "meshtrust.io/synced-at"
	AnnotationLayoutWritten   = "meshtrust.io/layout"
	AnnotationContentChecksum = "meshtrust.io/cacerts-sha256"
)

// RestartedAtAnnotation is the pod-template annotation `kubectl rollout
// restart` sets; ChecksumPodAnnotation carries the cacerts checksum the
// restart was for, so a restart happens once per content change even across
// controller restarts.
const (
	RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	ChecksumPodAnnotation = AnnotationContentChecksum
)

const defaultRootGrace = 720 * time.Hour

// Settings are a Certificate's annotations, parsed.
type Settings struct {
	Target        types.NamespacedName
	Layout        pki.Layout
	Adopt         bool
	RootGrace     time.Duration
	Schedule      *decision.Schedule
	RestartTarget string // Deployment name, "" for none

	LastSlot         time.Time
	LastSlotRecorded bool
	LastSlotRevision int

	GuardRecorded bool
	GuardRevision int
	GuardAt       time.Time
}

// OptedIn reports whether a Certificate carries the opt-in annotation.
func OptedIn(annotations map[string]string) bool {
	return annotations[AnnotationOptIn] == "true"
}

// ParseSettings reads a Certificate's annotations. The error names the
// annotation at fault.
func ParseSettings(crt *cmapi.Certificate, defaultName string) (Settings, error) {
	a := crt.Annotations
	s := Settings{
		Target:    types.NamespacedName{Namespace: crt.Namespace, Name: defaultName},
		Adopt:     a[AnnotationAdopt] == "true",
		RootGrace: defaultRootGrace,
	}
	if v, ok := a[AnnotationTarget]; ok {
		ns, name, found := strings.Cut(v, "/")
		if !found || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return s, fmt.Errorf("annotation %s=%q: want <namespace>/<name>", AnnotationTarget, v)
		}
		s.Target = types.NamespacedName{Namespace: ns, Name: name}
	}
	var err error
	if s.Layout, err = pki.ParseLayout(a[AnnotationLayout]); err != nil {
		return s, fmt.Errorf("annotation %s=%q: %w", AnnotationLayout, a[AnnotationLayout], err)
	}
	if v, ok := a[AnnotationRootGrace]; ok {
		if s.RootGrace, err = time.ParseDuration(v); err != nil || s.RootGrace < 0 {
			return s, fmt.Errorf("annotation %s=%q: want a non-negative Go duration such as 720h", AnnotationRootGrace, v)
		}
	}
	if v, ok := a[AnnotationRotationSchedule]; ok {
		var jitter time.Duration
		if j, ok := a[AnnotationRotationJitter]; ok {
			if jitter, err = time.ParseDuration(j); err != nil || jitter < 0 {
				return s, fmt.Errorf("annotation %s=%q: want a non-negative Go duration such as 30m", AnnotationRotationJitter, j)
			}
		}
		if s.Schedule, err = decision.ParseSchedule(v, jitter, string(crt.UID)); err != nil {
			return s, fmt.Errorf("annotation %s: %w", AnnotationRotationSchedule, err)
		}
	}
	if v, ok := a[AnnotationLastRotation]; ok {
		if s.LastSlot, err = time.Parse(time.RFC3339, v); err != nil {
			return s, fmt.Errorf("annotation %s=%q: want RFC 3339 time", AnnotationLastRotation, v)
		}
		s.LastSlotRecorded = true
		if s.LastSlotRevision, err = strconv.Atoi(a[AnnotationLastRotationRevision]); err != nil {
			s.LastSlotRevision = -1 // unknown: never "lost"
		}
	}
	if v, ok := a[AnnotationGuardRevision]; ok {
		if s.GuardRevision, err = strconv.Atoi(v); err != nil {
			return s, fmt.Errorf("annotation %s=%q: want a revision number", AnnotationGuardRevision, v)
		}
		if s.GuardAt, err = time.Parse(time.RFC3339, a[AnnotationGuardAt]); err != nil {
			return s, fmt.Errorf("annotation %s=%q: want RFC 3339 time", AnnotationGuardAt, a[AnnotationGuardAt])
		}
		s.GuardRecorded = true
	}
	if v, ok := a[AnnotationRestartAfterSync]; ok {
		kind, name, found := strings.Cut(v, "/")
		if !found || !strings.EqualFold(kind, "deployment") || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return s, fmt.Errorf("annotation %s=%q: want deployment/<name>", AnnotationRestartAfterSync, v)
		}
		s.RestartTarget = name
	}
	return s, nil
}
