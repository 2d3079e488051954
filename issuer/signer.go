package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshtrust/meshtrust/issuer/vault"
)

const (
	// ConditionLifetimeTruncated is set on a request whose certificate
	// Vault issued for noticeably less than the requested duration.
	ConditionLifetimeTruncated = "LifetimeTruncated"
	// ReasonVaultCappedTTL is the reason of ConditionLifetimeTruncated.
	ReasonVaultCappedTTL = "VaultCappedTTL"
	// truncationFieldOwner owns the truncation condition, apart from
	// issuer-lib's field owner, so neither removes the other's condition.
	truncationFieldOwner = "meshtrust-issuer-lifetime"
)

// Signer implements issuer-lib's Sign and Check for both issuer kinds.
type Signer struct {
	// Client creates TokenRequests and patches request status; it is the
	// manager's client.
	Client client.Client
	// APIReader reads Secrets uncached, so Secrets are neither cached nor
	// listed.
	APIReader client.Reader
	// Factory hands out cached Vault clients.
	Factory vault.ClientFactory
	// Metrics counts signed certificates.
	Metrics *vault.Metrics
	// Recorder emits events on requests.
	Recorder events.EventRecorder
	// Clock gives the time used to verify chains and stamp conditions.
	Clock clock.PassiveClock
	// ClusterResourceNamespace holds the Secrets and service accounts of
	// VaultClusterIssuers.
	ClusterResourceNamespace string
	// VaultTimeout bounds each Vault HTTP call; zero means the client's
	// default.
	VaultTimeout time.Duration
}

// Check confirms that Vault answers sys/health, that login works, and that
// the PKI issuer's certificate can be read.
func (s *Signer) Check(ctx context.Context, iss issuerapi.Issuer) error {
	v, err := s.view(iss)
	if err != nil {
		return err
	}
	err = s.check(ctx, v)
	if err != nil {
		logFailure(ctx, "Vault issuer check failed", err)
	}
	return err
}

func (s *Signer) check(ctx context.Context, v issuerView) error {
	cl, err := s.client(ctx, v)
	if err != nil {
		return err
	}
	return cl.Check(ctx, orDefault(v.spec.PKI.Mount, DefaultMount), v.spec.PKI.IssuerRef)
}

// Sign maps the request to a Vault call and splits the answer so that
// tls.crt holds the chain without roots and ca.crt the live roots.
func (s *Signer) Sign(ctx context.Context, cr signer.CertificateRequestObject, iss issuerapi.Issuer) (signer.PEMBundle, error) {
	bundle, err := s.sign(ctx, cr, iss)
	if err != nil {
		logFailure(ctx, "Signing failed", err)
		return signer.PEMBundle{}, err
	}
	return bundle, nil
}

func (s *Signer) sign(ctx context.Context, cr signer.CertificateRequestObject, iss issuerapi.Issuer) (signer.PEMBundle, error) {
	v, err := s.view(iss)
	if err != nil {
		return signer.PEMBundle{}, err
	}
	details, err := cr.GetCertificateDetails()
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: &FieldError{Field: "spec", Err: err}}
	}
	csr, err := ParseCSR(details.CSR)
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: &FieldError{Field: "spec.request", Err: err}}
	}
	req, err := BuildSignRequest(SignInput{Spec: v.spec, CSRPEM: details.CSR, CSR: csr, IsCA: details.IsCA, Duration: details.Duration})
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: err}
	}
	cl, err := s.client(ctx, v)
	if err != nil {
		// Building a client only fails on issuer settings (Secrets, CA
		// bundle), which the issuer's Check reports; the request waits.
		return signer.PEMBundle{}, signer.IssuerError{Err: err}
	}
	resp, err := cl.Sign(ctx, req)
	if err != nil {
		return signer.PEMBundle{}, classify(err)
	}
	if !PublicKeyMatches(resp.Certificate, csr) {
		return signer.PEMBundle{}, signer.PermanentError{Err: fmt.Errorf("vault %s returned a certificate whose public key does not match the CSR's; refusing it", req.Path())}
	}
	roots, err := cl.Roots(ctx, req.Mount)
	if err != nil {
		return signer.PEMBundle{}, classify(err)
	}
	now := s.Clock.Now()
	b, err := SplitResponse(resp, roots, now)
	if err != nil {
		return signer.PEMBundle{}, fmt.Errorf("vault %s: %w", req.Path(), err)
	}
	if granted, short := Truncation(b.Certificate, details.Duration); short {
		s.reportTruncation(ctx, cr, details.Duration, granted, now)
	}
	kind := "leaf"
	if req.CA {
		kind = "intermediate"
	}
	s.Metrics.Signed.WithLabelValues(kind).Inc()
	return signer.PEMBundle{ChainPEM: b.ChainPEM, CAPEM: b.CAPEM}, nil
}

// classify turns a Vault failure into issuer-lib's decision:
//   - Vault down, sealed, or the issuer's own login failing: an IssuerError,
//     so the issuer turns not-Ready and the request waits, never failing;
//   - a 403 that survived a fresh login (policy): retried until
//     MaxRetryDuration, carrying Vault's message;
//   - Vault refusing the request's content (4xx): permanent.
func classify(err error) error {
	var ve *vault.Error
	var fe *FieldError
	switch {
	case errors.As(err, &ve) && (ve.Op == "login" || ve.Op == "renew"):
		return signer.IssuerError{Err: err}
	case errors.As(err, &fe):
		return signer.IssuerError{Err: err}
	case vault.IsUnavailable(err):
		return signer.IssuerError{Err: err}
	case vault.IsPermissionDenied(err):
		return err
	case vault.IsRejected(err):
		return signer.PermanentError{Err: err}
	default:
		return err
	}
}

func logFailure(ctx context.Context, msg string, err error) {
	logger := log.FromContext(ctx)
	var fe *FieldError
	if errors.As(err, &fe) {
		logger = logger.WithValues("field", fe.Field)
	}
	logger.Info(msg, "reason", err.Error())
}

// reportTruncation emits an event and sets a condition on the request. It
// is best effort: the certificate is good, only shorter than asked.
func (s *Signer) reportTruncation(ctx context.Context, cr signer.CertificateRequestObject, requested, granted time.Duration, now time.Time) {
	logger := log.FromContext(ctx)
	msg := fmt.Sprintf("Vault issued the certificate for %s instead of the requested %s: the Vault role's max_ttl or the signing issuer's expiry caps it", granted.Round(time.Second), requested.Round(time.Second))
	logger.Info("Certificate lifetime truncated by Vault", "requested", requested.String(), "granted", granted.String())
	ro, ok := cr.(runtime.Object)
	if !ok {
		return
	}
	obj, ok := ro.DeepCopyObject().(client.Object)
	if !ok {
		return
	}
	if s.Recorder != nil {
		s.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ConditionLifetimeTruncated, "Sign", msg)
	}
	gvk, err := apiutil.GVKForObject(obj, s.Client.Scheme())
	if err != nil {
		logger.Error(err, "Cannot set the lifetime-truncated condition")
		return
	}
	cond := map[string]any{
		"type":               ConditionLifetimeTruncated,
		"status":             string(metav1.ConditionTrue),
		"reason":             ReasonVaultCappedTTL,
		"message":            msg,
		"lastTransitionTime": now.UTC().Format(time.RFC3339),
	}
	if gvk.Kind == "CertificateSigningRequest" {
		cond["lastUpdateTime"] = now.UTC().Format(time.RFC3339)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	if err := unstructured.SetNestedSlice(u.Object, []any{cond}, "status", "conditions"); err != nil {
		logger.Error(err, "Cannot set the lifetime-truncated condition")
		return
	}
	if err := s.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(truncationFieldOwner), client.ForceOwnership); err != nil {
		logger.Error(err, "Cannot set the lifetime-truncated condition")
	}
}
