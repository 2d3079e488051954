package issuer

import (
	"context"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

const (
	// ConditionLifetimeTruncated is set on a request whose certificate
	// Vault issued for noticeably less than the requested duration.
	ConditionLifetimeTruncated = "LifetimeTruncated"
	// ReasonVaultCappedTTL is the reason of ConditionLifetimeTruncated.
	ReasonVaultCappedTTL = "VaultCappedTTL"
	// lifetimeFieldOwner owns the truncation condition, apart from
	// issuer-lib's field owner, so that neither removes the other's
	// condition.
	lifetimeFieldOwner = "meshtrust-issuer-lifetime"
)

// A truncated lifetime is reported apart from Sign, by its own controller
// that only looks at requests our issuers have already issued. Writing the
// condition from inside Sign re-enqueued the request before issuer-lib's
// Issued patch reached the informer cache, and the request was signed a
// second time. issuer-lib ignores Ready requests, and the condition here is
// only ever written after Ready, so it cannot cause another Sign.

// LifetimeReport is what the truncation condition and event say.
type LifetimeReport struct {
	// Requested is the lifetime the request asked for.
	Requested time.Duration
	// Granted is the issued certificate's NotAfter minus its NotBefore.
	Granted time.Duration
}

// Message names both durations and the usual causes.
func (r LifetimeReport) Message() string {
	return fmt.Sprintf("Vault issued the certificate for %s instead of the requested %s: the Vault role's max_ttl or the signing issuer's expiry caps it",
		r.Granted.Round(time.Second), r.Requested.Round(time.Second))
}

// issuedRequest is a request for one of our issuers that already carries
// its certificate.
type issuedRequest struct {
	// req gives the requested duration and the conditions.
	req signer.CertificateRequestObject
	// certificatePEM is the issued chain, leaf first.
	certificatePEM []byte
}

// asIssuedRequest returns obj's view if it is a CertificateRequest for a
// VaultIssuer or VaultClusterIssuer that is Ready, or a Kubernetes CSR for a
// VaultClusterIssuer that carries a certificate.
func asIssuedRequest(obj client.Object) (issuedRequest, bool) {
	switch r := obj.(type) {
	case *cmapi.CertificateRequest:
		ref := r.Spec.IssuerRef
		if ref.Group != v1alpha1.GroupVersion.Group || (ref.Kind != "" && ref.Kind != "VaultIssuer" && ref.Kind != "VaultClusterIssuer") {
			return issuedRequest{}, false
		}
		if len(r.Status.Certificate) == 0 || !crReady(r) {
			return issuedRequest{}, false
		}
		return issuedRequest{req: signer.CertificateRequestObjectFromCertificateRequest(r), certificatePEM: r.Status.Certificate}, true
	case *certificatesv1.CertificateSigningRequest:
		if !strings.HasPrefix(r.Spec.SignerName, vaultcontract.SignerNamePrefix) || len(r.Status.Certificate) == 0 {
			return issuedRequest{}, false
		}
		return issuedRequest{req: signer.CertificateRequestObjectFromCertificateSigningRequest(r), certificatePEM: r.Status.Certificate}, true
	default:
		return issuedRequest{}, false
	}
}

func crReady(cr *cmapi.CertificateRequest) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady {
			return c.Status == cmmeta.ConditionTrue
		}
	}
	return false
}

func hasTruncationCondition(req signer.CertificateRequestObject) bool {
	for _, c := range req.GetConditions() {
		if c.Type == ConditionLifetimeTruncated {
			return true
		}
	}
	return false
}

// needsLifetimeCheck is the controller's filter: issued requests of ours
// that carry no truncation condition yet.
func needsLifetimeCheck(obj client.Object) bool {
	ir, ok := asIssuedRequest(obj)
	return ok && !hasTruncationCondition(ir.req)
}

// lifetimePredicate lets through only what needsLifetimeCheck accepts.
// Deletions never need a report.
func lifetimePredicate() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return needsLifetimeCheck(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return needsLifetimeCheck(e.ObjectNew) },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(e event.GenericEvent) bool { return needsLifetimeCheck(e.Object) },
	}
}

// lifetimeDecision says whether an issued request must be reported as
// truncated. report is false when there is nothing to do: the request is
// not ours or not issued, already carries the condition, or got (nearly)
// what it asked for. An error means the request cannot be judged.
func lifetimeDecision(obj client.Object) (r LifetimeReport, report bool, err error) {
	ir, ok := asIssuedRequest(obj)
	if !ok || hasTruncationCondition(ir.req) {
		return LifetimeReport{}, false, nil
	}
	details, err := ir.req.GetCertificateDetails()
	if err != nil {
		return LifetimeReport{}, false, &FieldError{Field: "spec", Err: err}
	}
	certs, err := pki.DecodeCertificates(ir.certificatePEM, pki.MaxChainPEMSize)
	if err != nil {
		return LifetimeReport{}, false, &FieldError{Field: "status.certificate", Err: err}
	}
	granted, short := Truncation(certs[0], details.Duration)
	return LifetimeReport{Requested: details.Duration, Granted: granted}, short, nil
}

// lifetimeReconciler sets ConditionLifetimeTruncated and emits one event on
// issued requests whose certificate is shorter than asked.
type lifetimeReconciler struct {
	// client reads requests from the cache and applies the condition.
	client client.Client
	// live reads a request from the API server just before writing, because
	// the cache may not hold our own previous write yet.
	live client.Reader
	// recorder emits the event.
	recorder events.EventRecorder
	// clock stamps the condition.
	clock clock.PassiveClock
	// newObject returns an empty request of the reconciled kind.
	newObject func() client.Object
}

// Reconcile implements reconcile.Reconciler.
func (r *lifetimeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	obj := r.newObject()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	rep, report, err := lifetimeDecision(obj)
	if err != nil {
		// Not ours to fix: issuer-lib and cert-manager judge the request.
		logger.Info("Cannot compare the issued lifetime with the requested one", "reason", err.Error())
		return ctrl.Result{}, nil
	}
	if !report {
		return ctrl.Result{}, nil
	}
	// The cache may lag our own write of a moment ago; the API server does
	// not. Reading it keeps the event to one per request.
	if err := r.live.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if _, report, _ = lifetimeDecision(obj); !report {
		return ctrl.Result{}, nil
	}
	if err := r.applyCondition(ctx, obj, rep); err != nil {
		return ctrl.Result{}, fmt.Errorf("setting the %s condition: %w", ConditionLifetimeTruncated, err)
	}
	logger.Info("Certificate lifetime truncated by Vault", "requested", rep.Requested.String(), "granted", rep.Granted.String())
	r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, ConditionLifetimeTruncated, "Sign", rep.Message())
	return ctrl.Result{}, nil
}

// applyCondition server-side applies only the truncation condition, under
// its own field owner, so issuer-lib's conditions are left alone.
func (r *lifetimeReconciler) applyCondition(ctx context.Context, obj client.Object, rep LifetimeReport) error {
	gvk, err := apiutil.GVKForObject(obj, r.client.Scheme())
	if err != nil {
		return err
	}
	now := r.clock.Now().UTC().Format(time.RFC3339)
	cond := map[string]any{
		"type":               ConditionLifetimeTruncated,
		"status":             string(metav1.ConditionTrue),
		"reason":             ReasonVaultCappedTTL,
		"message":            rep.Message(),
		"lastTransitionTime": now,
	}
	if gvk.Kind == "CertificateSigningRequest" {
		cond["lastUpdateTime"] = now
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	if err := unstructured.SetNestedSlice(u.Object, []any{cond}, "status", "conditions"); err != nil {
		return err
	}
	return r.client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(lifetimeFieldOwner), client.ForceOwnership)
}

// setupLifetimeReporters registers one lifetime controller per request kind
// the issuer serves.
func setupLifetimeReporters(mgr ctrl.Manager, recorder events.EventRecorder, clk clock.PassiveClock, opts Options) error {
	type kind struct {
		name string
		obj  func() client.Object
	}
	kinds := []kind{{name: "certificaterequest-lifetime", obj: func() client.Object { return &cmapi.CertificateRequest{} }}}
	if !opts.DisableKubernetesCSR {
		kinds = append(kinds, kind{name: "certificatesigningrequest-lifetime", obj: func() client.Object { return &certificatesv1.CertificateSigningRequest{} }})
	}
	for _, k := range kinds {
		r := &lifetimeReconciler{client: mgr.GetClient(), live: mgr.GetAPIReader(), recorder: recorder, clock: clk, newObject: k.obj}
		err := ctrl.NewControllerManagedBy(mgr).
			Named(k.name).
			For(k.obj(), builder.WithPredicates(lifetimePredicate())).
			WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
			Complete(r)
		if err != nil {
			return fmt.Errorf("setting up the %s controller: %w", k.name, err)
		}
	}
	return nil
}
