package issuer

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// The issuer's part of getting revocations to the data plane: for each
// VaultClusterIssuer that mints intermediates, it reads Vault's CRLs of the
// mount and the other clusters' entries of the CRL exchange, publishes this
// cluster's own intermediates' CRLs (which the syncer signs and leaves in
// the exchange ConfigMap), and writes the rest into that ConfigMap for the
// syncer. It runs every CRLRefreshInterval, at once when the syncer
// publishes a new CRL, and at once when the issuer carries a new
// crlexchange.RefreshAnnotation (`meshtrust vault revoke` sets it).

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch

// Stages of a refresh, the failures metric's label.
const (
	stageVaultCRLs = "vault-crl"
	stageExchange  = "exchange-read"
	stagePublish   = "exchange-publish"
	stagePeer      = "peer-entry"
	stageConfigMap = "configmap"
)

// CRLMetrics are the refresher's metrics. Labels carry issuer names and
// stages, never secret material.
type CRLMetrics struct {
	// Failures counts failed refreshes and rejected peer entries by stage
	// (meshtrust_crl_refresh_failures_total{stage}).
	Failures *prometheus.CounterVec
	// LastRefresh is when each VaultClusterIssuer last refreshed its
	// exchange ConfigMap from Vault.
	LastRefresh *prometheus.GaugeVec
}

// NewCRLMetrics builds the metrics and registers them with reg (if non-nil).
func NewCRLMetrics(reg prometheus.Registerer) (*CRLMetrics, error) {
	m := &CRLMetrics{
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrust_crl_refresh_failures_total",
			Help: "Failed CRL refreshes of the issuer by stage (vault-crl, exchange-read, exchange-publish, configmap), and other clusters' CRL exchange entries refused (peer-entry).",
		}, []string{"stage"}),
		LastRefresh: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrust_crl_last_refresh_timestamp_seconds",
			Help: "When the issuer last read Vault's CRLs and the CRL exchange for a VaultClusterIssuer and handed them to the syncer, as a Unix timestamp.",
		}, []string{"issuer"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Failures, m.LastRefresh} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering CRL metrics: %w", err)
			}
		}
	}
	return m, nil
}

// crlRefresher is the reconciler.
type crlRefresher struct {
	signer    *Signer
	issuers   client.Reader
	exchanges client.Reader
	writer    client.Client
	recorder  events.EventRecorder
	metrics   *CRLMetrics
	clock     clock.PassiveClock
	interval  time.Duration
	namespace string
}

// Reconcile refreshes one VaultClusterIssuer's exchange ConfigMap.
func (r *crlRefresher) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("vaultclusterissuer", req.Name)
	iss := &v1alpha1.VaultClusterIssuer{}
	if err := r.issuers.Get(ctx, req.NamespacedName, iss); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if iss.Spec.Intermediate == nil || iss.Spec.Intermediate.TrustDomain == "" {
		// An issuer of leaves only: no cacerts comes from it.
		return reconcile.Result{}, nil
	}
	key := types.NamespacedName{Namespace: r.namespace, Name: crlexchange.ConfigMapName(crlexchange.KindClusterIssuer, iss.Name)}
	cm := &corev1.ConfigMap{}
	switch err := r.exchanges.Get(ctx, key, cm); {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	data, peerProblems, stage, err := r.refresh(ctx, iss, cm)
	for _, p := range peerProblems {
		r.metrics.Failures.WithLabelValues(stagePeer).Inc()
		log.Info("CRL exchange entry of another cluster refused in part", "problem", p)
		r.recorder.Eventf(iss, nil, corev1.EventTypeWarning, "CRLPeerEntryRefused", "RefreshCRL", "%s", p)
	}
	if err != nil {
		// Retried at the next refresh, not with the queue's quick backoff:
		// what fails here (Vault away, a policy from before the CRL
		// exchange) does not mend in milliseconds, and every try costs
		// Vault calls. The previous CRLs stay with the syncer meanwhile.
		r.metrics.Failures.WithLabelValues(stage).Inc()
		if vault.IsPermissionDenied(err) && stage != stageVaultCRLs {
			err = fmt.Errorf("%w; the cluster's Vault policy predates the CRL exchange: run meshtrust vault enroll for it again", err)
		}
		log.Info("CRL refresh failed", "stage", stage, "reason", err.Error())
		r.recorder.Eventf(iss, nil, corev1.EventTypeWarning, "CRLRefreshFailed", "RefreshCRL", "%s: %v", stage, err)
		return reconcile.Result{RequeueAfter: r.interval}, nil
	}
	if err := r.apply(ctx, key, iss.Name, data); err != nil {
		r.metrics.Failures.WithLabelValues(stageConfigMap).Inc()
		return reconcile.Result{}, fmt.Errorf("writing ConfigMap %s: %w", key, err)
	}
	r.metrics.LastRefresh.WithLabelValues(iss.Name).Set(float64(r.clock.Now().Unix()))
	return reconcile.Result{RequeueAfter: r.interval}, nil
}

// refresh reads Vault and builds the issuer's keys of the exchange
// ConfigMap. On failure it names the stage.
func (r *crlRefresher) refresh(ctx context.Context, iss *v1alpha1.VaultClusterIssuer, cm *corev1.ConfigMap) (map[string]string, []string, string, error) {
	v, err := r.signer.view(iss)
	if err != nil {
		return nil, nil, stageVaultCRLs, err
	}
	cl, err := r.signer.client(ctx, v)
	if err != nil {
		return nil, nil, stageVaultCRLs, err
	}
	td := v.spec.Intermediate.TrustDomain
	ics, err := cl.IssuerCRLs(ctx, orDefault(v.spec.PKI.Mount, vaultcontract.DefaultMount), v.spec.PKI.IssuerRef)
	if err != nil {
		return nil, nil, stageVaultCRLs, err
	}
	now := r.clock.Now()
	var vaultCRLs []*x509.RevocationList
	for _, ic := range ics {
		vaultCRLs = append(vaultCRLs, ic.CRL)
	}
	entries, err := cl.CRLEntries(ctx)
	if err != nil {
		return nil, nil, stageExchange, err
	}
	prev := crlexchange.Status{}
	if cm != nil && cm.Data[crlexchange.KeyStatus] != "" {
		prev, _ = crlexchange.DecodeStatus(cm.Data[crlexchange.KeyStatus])
	}

	own, ownProblem := ownEntry(cm, td, now)
	if ownProblem != "" {
		logr.FromContextOrDiscard(ctx).Info("part of this cluster's own CRL entry is not published", "problem", ownProblem)
	}
	mine := entries[td]
	if len(own.certs) > 0 && own.pem() != mine.PEM {
		// Intermediates already published stay until they expire, so that
		// peers keep their CRLs while workload certificates they signed
		// are still around, even if the syncer no longer lists them.
		published, _ := checkEntry(mine.PEM, td, now)
		merged := entry{certs: own.certs, crls: own.crls}
		for i, c := range published.certs {
			if !slices.ContainsFunc(merged.certs, c.Equal) {
				merged.certs = append(merged.certs, c)
				merged.crls = append(merged.crls, published.crls[i])
			}
		}
		if merged.pem() != mine.PEM {
			mine = vault.CRLEntry{PEM: merged.pem(), Cluster: mine.Cluster, Updated: now}
			if err := cl.PublishCRLEntry(ctx, td, mine); err != nil {
				return nil, nil, stagePublish, err
			}
		}
	}
	status := crlexchange.Status{RefreshedAt: now.UTC(), TrustDomain: td, Answered: iss.Annotations[crlexchange.RefreshAnnotation], Published: map[string]time.Time{}}
	published, _ := checkEntry(mine.PEM, td, now)
	for _, c := range published.certs {
		fp := pki.Fingerprint(c)
		at, ok := prev.Published[fp]
		if !ok {
			at = now.UTC()
		}
		status.Published[fp] = at
	}

	var peerPEM strings.Builder
	var problems []string
	for _, peer := range slices.Sorted(maps.Keys(entries)) {
		if peer == td {
			continue
		}
		e, problem := checkEntry(entries[peer].PEM, peer, now)
		if problem != "" {
			problems = append(problems, fmt.Sprintf("CRL exchange entry %s: %s", vaultcontract.CRLExchangePath(peer), problem))
		}
		status.Peers = append(status.Peers, crlexchange.Peer{TrustDomain: peer, Intermediates: len(e.certs), Problem: problem})
		peerPEM.WriteString(e.pem())
	}
	statusText, err := status.Encode()
	if err != nil {
		return nil, problems, stageConfigMap, err
	}
	return map[string]string{
		crlexchange.KeyVaultCRLs: string(pki.EncodeCRLs(pki.SortCRLs(vaultCRLs)...)),
		crlexchange.KeyPeers:     peerPEM.String(),
		crlexchange.KeyStatus:    statusText,
	}, problems, "", nil
}

// apply server-side applies the issuer's keys, leaving the syncer's.
func (r *crlRefresher) apply(ctx context.Context, key types.NamespacedName, issuer string, data map[string]string) error {
	ac := corev1ac.ConfigMap(key.Name, key.Namespace).
		WithLabels(map[string]string{crlexchange.LabelKey: crlexchange.LabelValue, "app.kubernetes.io/managed-by": "meshtrust"}).
		WithAnnotations(map[string]string{crlexchange.IssuerAnnotation: issuer}).
		WithData(data)
	return r.writer.Apply(ctx, ac, client.FieldOwner(crlexchange.IssuerFieldManager), client.ForceOwnership)
}

// exchangeCacheOptions limits a cache to the exchange ConfigMaps of the
// cluster resource namespace.
func exchangeCacheOptions(namespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {
			Label:      labels.SelectorFromSet(labels.Set{crlexchange.LabelKey: crlexchange.LabelValue}),
			Namespaces: map[string]cache.Config{namespace: {}},
			Transform:  cache.TransformStripManagedFields(),
		},
	}
}

// refreshRequested passes issuer events that may need a refresh: a new
// spec or a new refresh annotation (and every create, which covers the
// start-up list).
func refreshRequested() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
				e.ObjectOld.GetAnnotations()[crlexchange.RefreshAnnotation] != e.ObjectNew.GetAnnotations()[crlexchange.RefreshAnnotation]
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
}

// ownEntriesChanged passes exchange ConfigMap events in which the syncer's
// keys changed, so that a newly signed CRL is published at once while the
// issuer's own writes wake nobody.
func ownEntriesChanged() predicate.TypedPredicate[*corev1.ConfigMap] {
	own := func(cm *corev1.ConfigMap) map[string]string {
		out := map[string]string{}
		for k, v := range cm.Data {
			if crlexchange.IsOwnKey(k) {
				out[k] = v
			}
		}
		return out
	}
	return predicate.TypedFuncs[*corev1.ConfigMap]{
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.ConfigMap]) bool {
			return !maps.Equal(own(e.ObjectOld), own(e.ObjectNew))
		},
		DeleteFunc: func(event.TypedDeleteEvent[*corev1.ConfigMap]) bool { return true },
	}
}

// setupCRLRefresher adds the refresher, with its ConfigMap cache and
// metrics, to mgr. A zero interval turns it off.
func setupCRLRefresher(mgr ctrl.Manager, s *Signer, recorder events.EventRecorder, clk clock.PassiveClock, reg prometheus.Registerer, opts Options) error {
	if opts.CRLRefreshInterval == 0 {
		return nil
	}
	m, err := NewCRLMetrics(reg)
	if err != nil {
		return err
	}
	cms, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject: exchangeCacheOptions(opts.ClusterResourceNamespace),
	})
	if err != nil {
		return fmt.Errorf("building the CRL exchange ConfigMap cache: %w", err)
	}
	if err := mgr.Add(cms); err != nil {
		return fmt.Errorf("adding the CRL exchange ConfigMap cache: %w", err)
	}
	r := &crlRefresher{signer: s, issuers: mgr.GetClient(), exchanges: cms, writer: mgr.GetClient(), recorder: recorder,
		metrics: m, clock: clk, interval: opts.CRLRefreshInterval, namespace: opts.ClusterResourceNamespace}
	toIssuer := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, cm *corev1.ConfigMap) []reconcile.Request {
		name := cm.Annotations[crlexchange.IssuerAnnotation]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("vaultclusterissuer-crl").
		For(&v1alpha1.VaultClusterIssuer{}, builder.WithPredicates(refreshRequested())).
		WatchesRawSource(source.Kind(cms, &corev1.ConfigMap{}, toIssuer, ownEntriesChanged())).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up the CRL refresher: %w", err)
	}
	return nil
}
