package syncer

import (
	"context"
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// The reconciler's CRL plumbing: the exchange ConfigMaps' cache, reading the
// one a Certificate's issuer fills, publishing the syncer's own entry, and
// the CRL metrics and condition.

// newExchangeCache adds a cache of the CRL exchange ConfigMaps of
// opts.CRLNamespace to mgr.
func newExchangeCache(mgr ctrl.Manager, opts Options) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {
				Label:      labels.SelectorFromSet(labels.Set{crlexchange.LabelKey: crlexchange.LabelValue}),
				Namespaces: map[string]cache.Config{opts.CRLNamespace: {}},
				Transform:  cache.TransformStripManagedFields(),
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build cache for CRL exchange ConfigMaps: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return nil, fmt.Errorf("add cache for CRL exchange ConfigMaps: %w", err)
	}
	return c, nil
}

// exchangeFor reads the exchange ConfigMap of crt's issuer; nil when the
// issuer is not a VaultClusterIssuer or has written none yet.
func (r *Reconciler) exchangeFor(ctx context.Context, crt *cmapi.Certificate) (*corev1.ConfigMap, error) {
	ref := crt.Spec.IssuerRef
	key, ok := crlexchange.ConfigMapFor(ref.Group, ref.Kind, ref.Name, r.Options.CRLNamespace)
	if !ok || r.Exchanges == nil {
		return nil, nil
	}
	cm := &corev1.ConfigMap{}
	switch err := r.Exchanges.Get(ctx, key, cm); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get CRL exchange ConfigMap %s: %w", key, err)
	}
	return cm, nil
}

// certificatesForExchange maps an exchange ConfigMap to the opted-in
// Certificates its issuer signs.
func (r *Reconciler) certificatesForExchange(ctx context.Context, cm *corev1.ConfigMap) []reconcile.Request {
	var list cmapi.CertificateList
	if err := r.Client.List(ctx, &list); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "list Certificates to map a CRL exchange event", "configmap", client.ObjectKeyFromObject(cm))
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		crt := &list.Items[i]
		ref := crt.Spec.IssuerRef
		if key, ok := crlexchange.ConfigMapFor(ref.Group, ref.Kind, ref.Name, r.Options.CRLNamespace); ok && OptedIn(crt.Annotations) && key == client.ObjectKeyFromObject(cm) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(crt)})
		}
	}
	return reqs
}

// applyCRL publishes the syncer's entry in the exchange ConfigMap and
// counts the CRL refusal and what ca-crl.pem now carries.
func (r *Reconciler) applyCRL(ctx context.Context, crt *cmapi.Certificate, p Plan) error {
	c := p.crl
	if c.refusal != nil {
		r.Metrics.CRLValidationFailures.WithLabelValues(c.refusal.Check).Inc()
		logr.FromContextOrDiscard(ctx).Info("refusing a CRL", "check", c.refusal.Check, "message", c.refusal.Message)
	}
	if c.own != nil && c.exchangeKey.Name != "" {
		ac := corev1ac.ConfigMap(c.exchangeKey.Name, c.exchangeKey.Namespace).
			WithLabels(map[string]string{crlexchange.LabelKey: crlexchange.LabelValue}).
			WithAnnotations(map[string]string{crlexchange.IssuerAnnotation: crt.Spec.IssuerRef.Name}).
			WithData(map[string]string{crlexchange.OwnKey(crt.Namespace, crt.Name): *c.own})
		if err := r.Client.Apply(ctx, ac, client.FieldOwner(crlexchange.SyncerFieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("publish this cluster's intermediate CRLs in ConfigMap %s: %w", c.exchangeKey, err)
		}
	}
	if c.count > 0 {
		r.Metrics.CRLNextUpdate.WithLabelValues(p.Target.Namespace, p.Target.Name).Set(float64(c.nextUpdate.Unix()))
		r.Metrics.CRLRevokedSerials.WithLabelValues(p.Target.Namespace, p.Target.Name).Set(float64(c.revoked))
	}
	return nil
}

// crlConditionChanged reports whether want differs from the Certificate's
// CRLSynced condition.
func crlConditionChanged(crt *cmapi.Certificate, want *Condition) bool {
	if want == nil {
		return false
	}
	c := decision.Condition(crt, ConditionCRLSynced)
	return c == nil || c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message
}
