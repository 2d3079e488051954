package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// Signer implements issuer-lib's Sign and Check for both issuer kinds.
type Signer struct {
	// Client creates TokenRequests; it is the manager's client.
	Client client.Client
	// APIReader reads Secrets uncached, so Secrets are neither cached nor
	// listed.
	APIReader client.Reader
	// Factory hands out cached Vault clients.
	Factory vault.ClientFactory
	// Metrics counts signed certificates.
	Metrics *vault.Metrics
	// Clock gives the time used to verify chains.
	Clock clock.PassiveClock
	// ClusterResourceNamespace holds the Secrets and service accounts of
	// VaultClusterIssuers.
	ClusterResourceNamespace string
	// VaultTimeout bounds each Vault HTTP call; zero means the client's
	// default.
	VaultTimeout time.Duration
	// RootsCacheTTL is how long a Vault client keeps an issuer's trust
	// anchors (ca.crt); zero means the client's default of a minute.
	RootsCacheTTL time.Duration
	// VaultIdleConnections is how many idle connections each issuer's Vault
	// client keeps; zero means Go's default.
	VaultIdleConnections int
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
		// The client holds what was read when it was built: the CA
		// bundle from its Secret and the credentials. Whatever failed
		// (a re-issued Vault TLS certificate, say) may be fixed in those
		// Secrets without touching the issuer, so the next check reads
		// them again.
		s.Factory.Forget(v.obj.GetUID())
	}
	return err
}

func (s *Signer) check(ctx context.Context, v issuerView) error {
	cl, err := s.client(ctx, v)
	if err != nil {
		return err
	}
	return cl.Check(ctx, orDefault(v.spec.PKI.Mount, vaultcontract.DefaultMount), v.spec.PKI.IssuerRef)
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
	req, csr, err := SignRequestFor(v.spec, details)
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
	if err := CheckIssued(resp.Certificate, req); err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: fmt.Errorf("vault %s: %w; refusing it", req.Path(), err)}
	}
	roots, err := cl.TrustAnchors(ctx, req.Mount, req.IssuerRef)
	if err != nil {
		return signer.PEMBundle{}, classify(err)
	}
	now := s.Clock.Now()
	b, err := SplitResponse(resp, roots, now)
	if err != nil {
		return signer.PEMBundle{}, fmt.Errorf("vault %s: %w", req.Path(), err)
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
