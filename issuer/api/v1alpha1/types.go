package v1alpha1

// VaultIssuerSpec configures how an issuer reaches Vault's PKI secrets engine.
// VaultIssuer and VaultClusterIssuer share it.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.caBundle) && has(self.caBundleSecretRef))",message="set at most one of caBundle and caBundleSecretRef"
type VaultIssuerSpec struct {
	// Server is the base URL of Vault, for example https://vault.example.com:8200.
	// +kubebuilder:validation:Pattern=`^https?://[^\s/]+(/.*)?$`
	// +kubebuilder:validation:MaxLength=2048
	Server string `json:"server"`

	// Namespace is the Vault Enterprise namespace requests are sent to.
	// Leave empty for Vault community edition.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// CABundle is a PEM bundle of CA certificates used to verify Vault's TLS
	// certificate. When neither this nor CABundleSecretRef is set, the system
	// trust store is used.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// CABundleSecretRef names a key of a Secret that holds the PEM CA bundle
	// used to verify Vault's TLS certificate. The Secret is read from the
	// issuer's namespace (VaultIssuer) or the cluster resource namespace
	// (VaultClusterIssuer).
	// +optional
	CABundleSecretRef *SecretKeySelector `json:"caBundleSecretRef,omitempty"`

	// PKI selects the PKI secrets engine mount, issuer and role.
	// +kubebuilder:default={}
	PKI PKISpec `json:"pki"`

	// Intermediate configures CA (isCA) requests. Without it, or without a
	// trustDomain, CA requests are refused.
	// +optional
	Intermediate *IntermediateSpec `json:"intermediate,omitempty"`

	// Auth is how the issuer logs in to Vault. Exactly one method must be set.
	Auth VaultAuth `json:"auth"`
}

// PKISpec selects where in Vault certificates are signed.
type PKISpec struct {
	// Mount is the path of the PKI secrets engine mount.
	// +kubebuilder:default=pki
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`
	// +optional
	Mount string `json:"mount,omitempty"`

	// IssuerRef names a Vault PKI issuer (its name or ID). When empty, the
	// mount's default issuer signs.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]*$`
	// +optional
	IssuerRef string `json:"issuerRef,omitempty"`

	// Role is the Vault PKI role used for non-CA requests (<mount>/sign/<role>).
	// Without it, non-CA requests are refused.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]*$`
	// +optional
	Role string `json:"role,omitempty"`
}

// IntermediateSpec shapes the intermediate CA certificates the issuer mints.
type IntermediateSpec struct {
	// TrustDomain is the bare SPIFFE trust domain (for example east.mesh)
	// that every intermediate is name-constrained to, through Vault's
	// permitted_uri_domains. It is required before CA requests are accepted.
	// Its syntax is internal/vaultcontract's ValidateTrustDomain, which
	// meshtrust vault enroll applies too: dot-separated DNS labels of
	// lowercase letters, digits and inner hyphens.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// MaxPathLength is the path length constraint stamped on intermediates.
	// The default 0 forbids the intermediate from minting further CAs.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=8
	// +kubebuilder:default=0
	// +optional
	MaxPathLength int32 `json:"maxPathLength,omitempty"`
}

// VaultAuth selects the Vault auth method. Exactly one field must be set.
//
// +kubebuilder:validation:XValidation:rule="(has(self.kubernetes) ? 1 : 0) + (has(self.appRole) ? 1 : 0) + (has(self.tokenSecretRef) ? 1 : 0) == 1",message="exactly one of kubernetes, appRole or tokenSecretRef must be set"
type VaultAuth struct {
	// Kubernetes logs in with a short-lived service-account token minted
	// through the TokenRequest API. No long-lived token Secret is needed.
	// +optional
	Kubernetes *KubernetesAuth `json:"kubernetes,omitempty"`

	// AppRole logs in with a role ID and a secret ID read from a Secret.
	// +optional
	AppRole *AppRoleAuth `json:"appRole,omitempty"`

	// TokenSecretRef names a Secret key holding a Vault token.
	// +optional
	TokenSecretRef *SecretKeySelector `json:"tokenSecretRef,omitempty"`
}

// KubernetesAuth configures Vault's Kubernetes auth method.
type KubernetesAuth struct {
	// MountPath is the path of the Kubernetes auth mount, without the
	// "auth/" prefix.
	// +kubebuilder:default=kubernetes
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`
	// +optional
	MountPath string `json:"mountPath,omitempty"`

	// Role is the Vault Kubernetes auth role to log in as.
	// +kubebuilder:validation:MinLength=1
	Role string `json:"role"`

	// ServiceAccountRef is the service account whose token is presented.
	ServiceAccountRef ServiceAccountRef `json:"serviceAccountRef"`
}

// ServiceAccountRef names a service account in the issuer's namespace
// (VaultIssuer) or the cluster resource namespace (VaultClusterIssuer).
type ServiceAccountRef struct {
	// Name of the service account.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Audiences of the requested token. When empty the token carries the
	// single audience vault://<namespace>/<issuer name> for a VaultIssuer or
	// vault://<issuer name> for a VaultClusterIssuer, as cert-manager does;
	// configure the Vault role's audience to match.
	// +optional
	Audiences []string `json:"audiences,omitempty"`
}

// AppRoleAuth configures Vault's AppRole auth method.
type AppRoleAuth struct {
	// MountPath is the path of the AppRole auth mount, without the "auth/"
	// prefix.
	// +kubebuilder:default=approle
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`
	// +optional
	MountPath string `json:"mountPath,omitempty"`

	// RoleID is the AppRole role ID. It is not a secret.
	// +kubebuilder:validation:MinLength=1
	RoleID string `json:"roleId"`

	// SecretRef names the Secret key holding the AppRole secret ID.
	SecretRef SecretKeySelector `json:"secretRef"`
}

// SecretKeySelector names one key of a Secret in the issuer's namespace
// (VaultIssuer) or the cluster resource namespace (VaultClusterIssuer).
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Key inside the Secret's data.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}
