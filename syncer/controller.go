package syncer

import (
	"context"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshtrust/meshtrust/internal/meshconfig"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// EventRecorder is the part of client-go's events.EventRecorder the syncer
// uses.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Reconciler syncs one opted-in Certificate into its cacerts Secret.
type Reconciler struct {
	// Client reads Certificates and cert-manager Secrets from the manager
	// cache and writes everything.
	Client client.Client
	// Targets reads Secrets named Options.SecretName (a second, small cache).
	Targets client.Reader
	// APIReader reads other targets and Deployments live, uncached.
	APIReader client.Reader
	// Exchanges reads the CRL exchange ConfigMaps (a third, small cache);
	// nil reads none, and no CRLs are written.
	Exchanges client.Reader
	// SignCRL signs this cluster's own intermediates' CRLs; nil means
	// pki.NewEmptyCRL.
	SignCRL  CRLSigner
	Recorder EventRecorder
	Metrics  *Metrics
	Options  Options
}

// Setup adds the syncer controller, its cacerts cache and its metrics to mgr.
// Metrics go to opts.MetricsRegistry. The manager's cache
// should have been built with CacheOptions(opts) merged in.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	opts, err := opts.complete()
	if err != nil {
		return err
	}
	reg := opts.MetricsRegistry
	if reg == nil {
		reg = metrics.Registry
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("register syncer metrics: %w", err)
	}
	if err := registerStatusMetrics(reg, mgr.GetCache(), opts, mgr.GetLogger().WithName("syncer-metrics")); err != nil {
		return err
	}
	targets, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
		ByObject:   targetCacheOptions(opts),
	})
	if err != nil {
		return fmt.Errorf("build cache for %s Secrets: %w", opts.SecretName, err)
	}
	if err := mgr.Add(targets); err != nil {
		return fmt.Errorf("add cache for %s Secrets: %w", opts.SecretName, err)
	}
	exchanges, err := newExchangeCache(mgr, opts)
	if err != nil {
		return err
	}
	r := &Reconciler{
		Client:    mgr.GetClient(),
		Targets:   targets,
		APIReader: mgr.GetAPIReader(),
		Exchanges: exchanges,
		Recorder:  mgr.GetEventRecorder(opts.ControllerName),
		Metrics:   m,
		Options:   opts,
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(opts.ControllerName).
		For(&cmapi.Certificate{}, builder.WithPredicates(OptedInPredicate())).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.certificatesForSecret)).
		WatchesRawSource(source.Kind(targets, &corev1.Secret{},
			handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, s *corev1.Secret) []reconcile.Request {
				return r.certificatesForSecret(ctx, s)
			}))).
		WatchesRawSource(source.Kind(exchanges, &corev1.ConfigMap{},
			handler.TypedEnqueueRequestsFromMapFunc(r.certificatesForExchange))).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
}

// certificatesForSecret maps a Secret to the opted-in Certificates that read
// it (spec.secretName) or write it (target). Opted-in Certificates are few,
// so a cached list is cheap.
func (r *Reconciler) certificatesForSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var list cmapi.CertificateList
	if err := r.Client.List(ctx, &list); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "list Certificates to map a Secret event", "secret", client.ObjectKeyFromObject(obj))
		return nil
	}
	key := client.ObjectKeyFromObject(obj)
	var reqs []reconcile.Request
	for i := range list.Items {
		crt := &list.Items[i]
		if !OptedIn(crt.Annotations) {
			continue
		}
		s, _ := ParseSettings(crt, r.Options.SecretName)
		if (crt.Namespace == key.Namespace && crt.Spec.SecretName == key.Name) || s.Target == key {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(crt)})
		}
	}
	return reqs
}

// Reconcile gathers inputs, computes a plan and applies it.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("certificate", req.NamespacedName)
	ctx = logr.NewContext(ctx, log)
	crt := &cmapi.Certificate{}
	if err := r.Client.Get(ctx, req.NamespacedName, crt); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !OptedIn(crt.Annotations) || crt.DeletionTimestamp != nil {
		// cacerts is deliberately left in place: deleting it would take
		// istiod's CA away.
		return reconcile.Result{}, nil
	}
	in, err := r.gather(ctx, crt)
	if err != nil {
		r.Metrics.Syncs.WithLabelValues(ResultError).Inc()
		return reconcile.Result{}, err
	}
	return r.apply(ctx, crt, Compute(in))
}

func (r *Reconciler) gather(ctx context.Context, crt *cmapi.Certificate) (Input, error) {
	in := Input{Now: r.Options.Clock.Now(), Options: r.Options, Certificate: crt}
	src := &corev1.Secret{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: crt.Namespace, Name: crt.Spec.SecretName}, src); {
	case err == nil:
		in.Source = src
	case !apierrors.IsNotFound(err):
		return in, fmt.Errorf("get source Secret %s/%s: %w", crt.Namespace, crt.Spec.SecretName, err)
	}
	s, err := ParseSettings(crt, r.Options.SecretName)
	if err != nil {
		return in, nil // Compute reports it
	}
	if !r.Options.targetAllowed(crt.Namespace, s.Target.Namespace) {
		return in, nil // never even read outside the allowed namespaces
	}
	reader := r.APIReader
	if s.Target.Name == r.Options.SecretName {
		reader = r.Targets
	}
	existing := &corev1.Secret{}
	switch err := reader.Get(ctx, s.Target, existing); {
	case err == nil:
		in.Existing = existing
	case !apierrors.IsNotFound(err):
		return in, fmt.Errorf("get target Secret %s: %w", s.Target, err)
	}
	if in.Existing != nil && s.Adopt && in.Existing.Labels[decision.ManagedByLabel] == decision.ManagedByValue {
		// Only adoption asks whether the Certificate feeding the target has
		// let go of it; decision.TargetNotForeign decides.
		if src := in.Existing.Annotations[decision.SourceAnnotation]; src != "" && src != crt.Namespace+"/"+crt.Name {
			in.PreviousOwnerReleased = r.ownerReleased(ctx, src, s.Target)
		}
	}
	if in.Exchange, err = r.exchangeFor(ctx, crt); err != nil {
		return in, err
	}
	in.SignCRL = r.SignCRL
	if in.SignCRL == nil {
		in.SignCRL = pki.NewEmptyCRL
	}
	r.gatherMesh(ctx, s.Target.Namespace, &in)
	if s.RestartTarget != "" {
		dep := &appsv1.Deployment{}
		switch err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.Target.Namespace, Name: s.RestartTarget}, dep); {
		case err == nil:
			in.Deployment = dep
		case !apierrors.IsNotFound(err):
			return in, fmt.Errorf("get Deployment %s/%s: %w", s.Target.Namespace, s.RestartTarget, err)
		}
	}
	return in, nil
}

// gatherMesh reads Istio's mesh ConfigMap in the target's namespace, live
// (it changes rarely and is read once per reconcile). An absent one leaves
// nothing to check; one that cannot be read (say, RBAC without the get) is
// logged and not checked: the check is advice, and must not stop a sync.
func (r *Reconciler) gatherMesh(ctx context.Context, ns string, in *Input) {
	name := r.Options.MeshConfigMap
	if name == "" {
		return
	}
	cm := &corev1.ConfigMap{}
	switch err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); {
	case apierrors.IsNotFound(err):
		return
	case err != nil:
		logr.FromContextOrDiscard(ctx).Info("cannot read Istio's mesh ConfigMap; its trust domain is not checked", "configMap", ns+"/"+name, "error", err.Error())
		return
	}
	in.MeshSource = ns + "/" + name
	td, err := meshconfig.FromConfigMap(cm)
	if err != nil {
		in.MeshErr = err
		return
	}
	in.Mesh = &td
}

// ownerReleased reports whether the Certificate src ("<namespace>/<name>",
// from a cacerts source annotation) no longer feeds target: it is gone, being
// deleted, no longer opts in, or targets another Secret. It reads the cached
// client, which holds every Certificate (stubs for those not opted in).
func (r *Reconciler) ownerReleased(ctx context.Context, src string, target types.NamespacedName) bool {
	ns, name, ok := strings.Cut(src, "/")
	if !ok || ns == "" || name == "" {
		return true // names no Certificate at all
	}
	other := &cmapi.Certificate{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, other); {
	case apierrors.IsNotFound(err):
		return true
	case err != nil:
		// Typically a namespace outside this controller's cache, perhaps
		// served by another instance: that it let go cannot be shown, so
		// it keeps the Secret.
		logr.FromContextOrDiscard(ctx).Info("cannot look up the Certificate that feeds the target; not adopting", "source", src, "error", err.Error())
		return false
	}
	if other.DeletionTimestamp != nil || !OptedIn(other.Annotations) {
		return true
	}
	s, _ := ParseSettings(other, r.Options.SecretName)
	return s.Target != target
}

// apply carries out a plan: write cacerts, record the slot, trigger the
// renewal, restart istiod; then events and metrics.
func (r *Reconciler) apply(ctx context.Context, crt *cmapi.Certificate, p Plan) (reconcile.Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("target", p.Target)
	now := r.Options.Clock.Now()
	for _, e := range p.Events {
		r.Recorder.Eventf(crt, nil, e.Type, e.Reason, "Sync", "%s", e.Message)
		if e.Type == corev1.EventTypeWarning {
			log.Info("refusing or warning", "reason", e.Reason, "check", p.FailedCheck(), "message", e.Message)
		}
	}
	if p.Result == ResultRefused {
		r.Metrics.ValidationFailures.WithLabelValues(p.FailedCheck()).Inc()
	}
	if err := r.applyCRL(ctx, crt, p); err != nil {
		return reconcile.Result{}, err
	}

	if p.Secret != nil {
		var err error
		if p.Create {
			err = r.Client.Create(ctx, p.Secret)
		} else {
			err = r.Client.Update(ctx, p.Secret)
		}
		if err != nil {
			r.Metrics.Syncs.WithLabelValues(ResultError).Inc()
			// Conflict and AlreadyExists mean our read was stale; the
			// requeue re-reads and re-decides, never blindly overwrites.
			return reconcile.Result{}, fmt.Errorf("write %s: %w", p.Target, err)
		}
		a := p.Secret.Annotations
		log.Info("wrote cacerts", "serial", a[AnnotationSerial], "notAfter", a[AnnotationNotAfter], "roots", p.Roots, "layout", a[AnnotationLayoutWritten])
		r.Recorder.Eventf(crt, nil, corev1.EventTypeNormal, "Synced", "Sync", "wrote %s (layout %s, serial %s, notAfter %s, %d roots)",
			p.Target, a[AnnotationLayoutWritten], a[AnnotationSerial], a[AnnotationNotAfter], p.Roots)
		r.Metrics.LastSync.Set(float64(now.Unix()))
	}
	r.Metrics.Syncs.WithLabelValues(p.Result).Inc()
	if !p.Expiry.IsZero() {
		r.Metrics.Expiry.WithLabelValues(p.Target.Namespace, p.Target.Name).Set(float64(p.Expiry.Unix()))
		r.Metrics.Roots.WithLabelValues(p.Target.Namespace, p.Target.Name).Set(float64(p.Roots))
	}

	if p.Record != nil || p.Guard != nil {
		if err := r.record(ctx, crt, p.Record, p.Guard); err != nil {
			return reconcile.Result{}, err
		}
	}
	if p.Renew != nil || conditionChanged(crt, p.Condition) || crlConditionChanged(crt, p.crl.condition) {
		if err := r.patchStatus(ctx, crt, p, now); err != nil {
			return reconcile.Result{}, err
		}
	}
	if p.Renew != nil {
		log.Info("triggered renewal", "reason", p.Renew.Reason, "message", p.Renew.Message)
		r.Recorder.Eventf(crt, nil, corev1.EventTypeNormal, p.Renew.Reason, "Renew", "%s", p.Renew.Message)
	}
	if p.Restart != "" && p.Result != ResultRefused {
		if err := r.restart(ctx, p.Target.Namespace, p.Restart, p.Checksum, now); err != nil {
			return reconcile.Result{}, err
		}
		log.Info("restarted deployment", "deployment", p.Restart)
		r.Recorder.Eventf(crt, nil, corev1.EventTypeNormal, "Restarted", "Restart", "restarted deployment %s/%s for the new cacerts", p.Target.Namespace, p.Restart)
	}
	return reconcile.Result{RequeueAfter: p.RequeueAfter}, p.Retry()
}

// record stores the scheduled-rotation slot and the lifetime-guard trigger
// before the renewal is triggered, so a restart never fires either twice;
// ScheduledTriggerLost and GuardTriggerLost cover a crash between the two
// writes.
func (r *Reconciler) record(ctx context.Context, crt *cmapi.Certificate, slot *SlotRecord, guard *GuardRecord) error {
	base := crt.DeepCopy()
	if crt.Annotations == nil {
		crt.Annotations = map[string]string{}
	}
	if slot != nil {
		crt.Annotations[AnnotationLastRotation] = slot.Slot.UTC().Format(time.RFC3339)
		crt.Annotations[AnnotationLastRotationRevision] = fmt.Sprint(slot.Revision)
	}
	if guard != nil {
		crt.Annotations[AnnotationGuardRevision] = fmt.Sprint(guard.Revision)
		crt.Annotations[AnnotationGuardAt] = guard.At.UTC().Format(time.RFC3339)
	}
	if err := r.Client.Patch(ctx, crt, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("record scheduled rotation or lifetime-guard trigger on Certificate: %w", err)
	}
	return nil
}

// patchStatus sets the CACertsSynced condition and, for a renewal,
// Issuing=True, which is how `cmctl renew` asks cert-manager to re-issue.
// The optimistic lock makes a concurrent cert-manager write win and us retry.
func (r *Reconciler) patchStatus(ctx context.Context, crt *cmapi.Certificate, p Plan, now time.Time) error {
	base := crt.DeepCopy()
	if c := p.Condition; c != nil {
		setCondition(crt, ConditionCACertsSynced, c.Status, c.Reason, c.Message, now)
	}
	if c := p.crl.condition; c != nil {
		setCondition(crt, ConditionCRLSynced, c.Status, c.Reason, c.Message, now)
	}
	if rn := p.Renew; rn != nil {
		setCondition(crt, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, rn.Reason, rn.Message, now)
	}
	if err := r.Client.Status().Patch(ctx, crt, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch Certificate status (conditions): %w", err)
	}
	return nil
}

// conditionChanged reports whether want differs from the Certificate's
// CACertsSynced condition.
func conditionChanged(crt *cmapi.Certificate, want *Condition) bool {
	if want == nil {
		return false
	}
	c := decision.Condition(crt, ConditionCACertsSynced)
	return c == nil || c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message
}

// restart does what `kubectl rollout restart` does, plus the checksum that
// makes it happen once per cacerts content.
func (r *Reconciler) restart(ctx context.Context, ns, name, sum string, now time.Time) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q,%q:%q}}}}}`,
		RestartedAtAnnotation, now.UTC().Format(time.RFC3339), ChecksumPodAnnotation, sum)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := r.Client.Patch(ctx, dep, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("restart deployment %s/%s: %w", ns, name, err)
	}
	return nil
}

// setCondition sets a condition, keeping LastTransitionTime when the status
// does not change.
func setCondition(crt *cmapi.Certificate, t cmapi.CertificateConditionType, status cmmeta.ConditionStatus, reason, msg string, now time.Time) {
	ts := metav1.NewTime(now)
	c := cmapi.CertificateCondition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: &ts, ObservedGeneration: crt.Generation}
	if old := decision.Condition(crt, t); old != nil {
		if old.Status == status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		*old = c
		return
	}
	crt.Status.Conditions = append(crt.Status.Conditions, c)
}
