package issuer

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// serviceAccountTokenSeconds is the lifetime of the tokens we mint for
// Kubernetes auth: the API server's minimum, since each is used once.
const serviceAccountTokenSeconds = 600

// issuerView is what the signer needs from either issuer kind.
type issuerView struct {
	obj  client.Object
	spec *v1alpha1.VaultIssuerSpec
	// secretNamespace is where the issuer's Secrets and service account live.
	secretNamespace string
	// defaultAudience is the service-account token audience when the spec
	// names none, as cert-manager's Vault issuer does.
	defaultAudience string
}

func (s *Signer) view(iss issuerapi.Issuer) (issuerView, error) {
	switch i := iss.(type) {
	case *v1alpha1.VaultIssuer:
		return issuerView{obj: i, spec: &i.Spec, secretNamespace: i.Namespace, defaultAudience: vaultcontract.IssuerAudience(i.Namespace, i.Name)}, nil
	case *v1alpha1.VaultClusterIssuer:
		return issuerView{obj: i, spec: &i.Spec, secretNamespace: s.ClusterResourceNamespace, defaultAudience: vaultcontract.ClusterIssuerAudience(i.Name)}, nil
	default:
		return issuerView{}, signer.PermanentError{Err: fmt.Errorf("unexpected issuer type %T", iss)}
	}
}

// cacheKey is the issuer's UID and generation plus a digest of the auth
// settings and of where its Secrets are read from.
func (v issuerView) cacheKey() vault.CacheKey {
	auth, _ := json.Marshal(v.spec.Auth)
	caRef, _ := json.Marshal(v.spec.CABundleSecretRef)
	return vault.CacheKey{
		UID:        v.obj.GetUID(),
		Generation: v.obj.GetGeneration(),
		Settings:   vault.SettingsDigest(v.secretNamespace, v.spec.Server, v.spec.Namespace, string(auth), string(caRef), string(v.spec.CABundle)),
	}
}

// client returns the issuer's cached Vault client.
func (s *Signer) client(ctx context.Context, v issuerView) (*vault.Client, error) {
	return s.Factory.Get(ctx, v.cacheKey(), func(ctx context.Context) (vault.Config, error) {
		return s.vaultConfig(ctx, v)
	})
}

func (s *Signer) vaultConfig(ctx context.Context, v issuerView) (vault.Config, error) {
	spec := v.spec
	if err := CheckServer(spec.Server); err != nil {
		return vault.Config{}, err
	}
	cfg := vault.Config{Address: spec.Server, Namespace: spec.Namespace, CACert: spec.CABundle, Timeout: s.VaultTimeout, RootsTTL: s.RootsCacheTTL, IdleConnections: s.VaultIdleConnections}
	if ref := spec.CABundleSecretRef; ref != nil {
		ca, err := s.secretValue(ctx, v.secretNamespace, *ref, "spec.caBundleSecretRef")
		if err != nil {
			return cfg, err
		}
		cfg.CACert = []byte(ca)
	}
	auth := spec.Auth
	switch {
	case auth.Kubernetes != nil:
		k := auth.Kubernetes
		audiences := k.ServiceAccountRef.Audiences
		custom := len(audiences) > 0
		if !custom {
			audiences = []string{v.defaultAudience}
		}
		sa := types.NamespacedName{Namespace: v.secretNamespace, Name: k.ServiceAccountRef.Name}
		cfg.Auth = vault.KubernetesAuth(orDefault(k.MountPath, vaultcontract.DefaultKubernetesAuthMount), k.Role, func(ctx context.Context) (string, error) {
			token, err := s.serviceAccountToken(ctx, sa, audiences)
			if err != nil || !custom {
				return token, err
			}
			return token, s.refuseAPIServerAudience(ctx, token, audiences)
		})
	case auth.AppRole != nil:
		a := auth.AppRole
		cfg.Auth = vault.AppRoleAuth(orDefault(a.MountPath, vaultcontract.AppRoleAuthMount), a.RoleID, func(ctx context.Context) (string, error) {
			return s.secretValue(ctx, v.secretNamespace, a.SecretRef, "spec.auth.appRole.secretRef")
		})
	case auth.TokenSecretRef != nil:
		ref := *auth.TokenSecretRef
		cfg.Auth = vault.TokenAuth(func(ctx context.Context) (string, error) {
			return s.secretValue(ctx, v.secretNamespace, ref, "spec.auth.tokenSecretRef")
		})
	default:
		return cfg, signer.PermanentError{Err: fieldErr("spec.auth", "names no auth method; set exactly one of kubernetes, appRole or tokenSecretRef")}
	}
	return cfg, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// secretValue reads one key of a Secret straight from the API server, so the
// manager never caches (or needs to list) Secrets. The value is trimmed of
// surrounding whitespace, which files written by hand often carry.
func (s *Signer) secretValue(ctx context.Context, namespace string, ref v1alpha1.SecretKeySelector, field string) (string, error) {
	var sec corev1.Secret
	if err := s.APIReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fieldErr(field, "Secret %s/%s not found", namespace, ref.Name)
		}
		return "", fieldErr(field, "reading Secret %s/%s: %w", namespace, ref.Name, err)
	}
	val, ok := sec.Data[ref.Key]
	if !ok {
		return "", fieldErr(field, "key %q not found in Secret %s/%s", ref.Key, namespace, ref.Name)
	}
	v := strings.TrimSpace(string(val))
	if v == "" {
		return "", fieldErr(field, "key %q of Secret %s/%s is empty", ref.Key, namespace, ref.Name)
	}
	return v, nil
}

// serviceAccountToken mints a short-lived token for the service account
// through the TokenRequest API, so no long-lived token Secret is needed.
func (s *Signer) serviceAccountToken(ctx context.Context, sa types.NamespacedName, audiences []string) (string, error) {
	field := "spec.auth.kubernetes.serviceAccountRef"
	obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name}}
	expiry := int64(serviceAccountTokenSeconds)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry}}
	if err := s.Client.SubResource("token").Create(ctx, obj, tr); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fieldErr(field, "service account %s/%s not found", sa.Namespace, sa.Name)
		}
		return "", fieldErr(field, "requesting a token for service account %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	if tr.Status.Token == "" {
		return "", fieldErr(field, "the TokenRequest for service account %s/%s returned no token", sa.Namespace, sa.Name)
	}
	return tr.Status.Token, nil
}

// refuseAPIServerAudience refuses a token the Kubernetes API server itself
// would accept. The audiences are the issuer author's choice and the token
// goes to the Vault address they chose: with the API server's own audience,
// Vault (or whoever spec.server points at) would get this service account's
// Kubernetes access, which is the controller's own for a VaultClusterIssuer.
// A TokenReview without audiences checks against the API server's.
func (s *Signer) refuseAPIServerAudience(ctx context.Context, token string, audiences []string) error {
	field := "spec.auth.kubernetes.serviceAccountRef.audiences"
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if err := s.Client.Create(ctx, review); err != nil {
		return fieldErr(field, "checking that %q is not the Kubernetes API server's own audience (a TokenReview, which needs create on tokenreviews): %w", audiences, err)
	}
	if review.Status.Authenticated {
		return fieldErr(field, "%q includes an audience the Kubernetes API server accepts; a token for it would give Vault, or whoever spec.server points at, this service account's Kubernetes access. Use an audience only Vault's role expects, e.g. the default vault://<issuer>", audiences)
	}
	return nil
}

// CheckServer refuses a Vault address that would carry credentials in
// cleartext: every login sends a Vault token, an AppRole secret ID or a
// service-account token. Plain http is allowed to a loopback address only,
// where nothing crosses a network (a local Vault in a lab).
func CheckServer(server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return fieldErr("spec.server", "is not a URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fieldErr("spec.server", "%s would send Vault credentials in cleartext; use https (plain http is allowed only to a loopback address)", server)
	default:
		return fieldErr("spec.server", "scheme %q: want https", u.Scheme)
	}
}
