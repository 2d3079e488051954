package vaultadmin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// Vault's kubernetes auth calls the cluster's TokenReview API with a
// stored token_reviewer_jwt. Vault could use the logging-in client's own
// JWT instead, but only a token the API server accepts as a credential can
// call TokenReview, and the issuer sends Vault only tokens bound to Vault's
// audience, which the API server refuses (issuer/config.go,
// refuseAPIServerAudience): so the token is stored, and never lapses
// silently. Enrol records a minted token's expiry on its ServiceAccount,
// mints a new one within vaultcontract.ReviewerTokenRenewBefore of it, and
// status warns from then on.

// authConfig is what a kubernetes auth mount's config says now.
type authConfig struct {
	// host is its kubernetes_host.
	host string
	// pointsAt is true when host and CA are the cluster's.
	pointsAt bool
	// tokenSet is token_reviewer_jwt_set: a reviewer token is stored.
	tokenSet bool
}

func (a authConfig) describe(mounted bool) string {
	switch {
	case !mounted:
		return Absent
	case a.host == "" || a.host == "<nil>":
		return "not configured"
	case a.tokenSet:
		return "kubernetes_host " + a.host + ", a stored token_reviewer_jwt"
	}
	return "kubernetes_host " + a.host + ", no stored token_reviewer_jwt"
}

// planReviewerToken plans the mount's configuration: the cluster's API
// server, its CA and a reviewer token, minted in the cluster (or read from
// --reviewer-jwt-file). A second run keeps the stored token until it is
// within ReviewerTokenRenewBefore of its recorded expiry (or its expiry is
// unknown: an enrol before it was recorded), then mints a new one.
func (p *EnrollPlan) planReviewerToken(ctx context.Context, c *Client, cs kubernetes.Interface, o EnrollOptions, cfgPath string, mounted bool, cur authConfig) error {
	k := o.Kubernetes
	expires, known := time.Time{}, false
	if k.ReviewerJWT == nil && cs != nil {
		sa, err := cs.CoreV1().ServiceAccounts(k.ReviewerNamespace).Get(ctx, k.ReviewerName, metav1.GetOptions{})
		switch {
		case err == nil:
			expires, known = reviewerExpiry(sa.Annotations, o.AuthMount)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("reading ServiceAccount %s/%s: %w", k.ReviewerNamespace, k.ReviewerName, err)
		}
	}
	renewDue := k.ReviewerJWT == nil && (!known || !o.Now.Add(vaultcontract.ReviewerTokenRenewBefore).Before(expires))
	if cur.pointsAt && cur.tokenSet && !renewDue && !k.RefreshReviewer {
		until := "no known expiry"
		if known {
			until = "expires " + expires.UTC().Format(time.RFC3339)
		}
		p.check(cfgPath, SystemVault, "already points at %s; stored reviewer token %s", k.Host, until)
		return nil
	}
	reviewer := k.ReviewerJWT
	if reviewer == nil && cs != nil {
		var err error
		if reviewer, err = p.planReviewer(ctx, cs, k, o.AuthMount); err != nil {
			return err
		}
	}
	if reviewer == nil {
		return fmt.Errorf("kubernetes auth at %s needs a reviewer token (--context or --reviewer-jwt-file)", o.AuthMount)
	}
	why := "a fresh reviewer token"
	if cur.tokenSet && known && renewDue {
		why = fmt.Sprintf("a fresh reviewer token, since the stored one expires %s, within %s", expires.UTC().Format(time.RFC3339), Dur(vaultcontract.ReviewerTokenRenewBefore))
	}
	system := SystemVault
	if k.ReviewerJWT == nil {
		// The minted token's expiry is recorded on its ServiceAccount.
		system += "+" + SystemKubernetes
	}
	p.change(Step{Name: cfgPath, System: system, Detail: fmt.Sprintf("points at %s with %s (%s)", k.Host, why, KnownAfterApply),
		Before: cur.describe(mounted), After: fmt.Sprintf("kubernetes_host %s, its CA, a fresh token_reviewer_jwt", k.Host)},
		func(ctx context.Context, s *Step) error {
			jwt, expires, err := reviewer(ctx)
			if err != nil {
				return fmt.Errorf("getting a token reviewer token: %w", err)
			}
			if _, err := c.write(ctx, "configuring "+cfgPath, cfgPath, map[string]any{
				"kubernetes_host":      k.Host,
				"kubernetes_ca_cert":   string(k.CACert),
				"token_reviewer_jwt":   jwt,
				"disable_local_ca_jwt": true,
			}); err != nil {
				return err
			}
			until := "no known expiry"
			if !expires.IsZero() {
				until = "expires " + expires.UTC().Format(time.RFC3339) + "; enroll renews it within " + Dur(vaultcontract.ReviewerTokenRenewBefore) + " of that"
			}
			s.Detail = fmt.Sprintf("points at %s with %s (%s)", k.Host, why, until)
			return nil
		})
	return nil
}

// reviewerExpiry reads the expiry enrol recorded on a reviewer
// ServiceAccount for mount.
func reviewerExpiry(ann map[string]string, mount string) (time.Time, bool) {
	if ann[vaultcontract.ReviewerTokenMountAnnotation] != mount {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, ann[vaultcontract.ReviewerTokenExpiresAnnotation])
	return t, err == nil
}

// JWTExpiry reads the exp claim of a JWT without verifying it, to say when
// a reviewer token given as a file stops working; zero when it has none.
// The token itself is never printed.
func JWTExpiry(token string) time.Time {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}
	}
	sec, err := claims.Exp.Int64()
	if err != nil || sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
