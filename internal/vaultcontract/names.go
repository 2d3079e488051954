package vaultcontract

import "time"

// Names both halves use for one cluster: enrol creates them in Vault and
// prints them into the manifests, the issuer logs in and signs with them.

// SignerNamePrefix is the signerName prefix of Kubernetes
// CertificateSigningRequests addressed to a VaultClusterIssuer:
// "vaultclusterissuers.meshtrust.io/<name>".
const SignerNamePrefix = "vaultclusterissuers.meshtrust.io/"

// The API group and kinds of meshtrust's issuers, which a Certificate's
// issuerRef names and the syncer allows by default.
const (
	IssuerGroup       = "meshtrust.io"
	ClusterIssuerKind = "VaultClusterIssuer"
	IssuerKind        = "VaultIssuer"
)

// OptInAnnotation on a cert-manager Certificate makes the syncer copy its
// Secret into Istio's cacerts ("true"); enrol's Certificate carries it.
const OptInAnnotation = "meshtrust.io/istio-cacerts"

// Auth mounts.
const (
	// DefaultKubernetesAuthMount is the issuer's Kubernetes auth mount when
	// spec.auth.kubernetes.mountPath is empty.
	DefaultKubernetesAuthMount = "kubernetes"
	// AppRoleAuthMount is the AppRole mount: the issuer's default, and the
	// shared mount enrol puts every AppRole cluster's role in.
	AppRoleAuthMount = "approle"
	// AppRoleMountDescription marks an AppRole mount enrol created. It names
	// no cluster: the mount is shared, so no single unenrol may disable it.
	AppRoleMountDescription = "meshtrust"
)

// PolicyName is the Vault policy enrol writes for cluster.
func PolicyName(cluster string) string { return "meshtrust-" + cluster }

// RoleName is the auth role enrol writes for cluster, in either auth method.
func RoleName(cluster string) string { return "meshtrust-" + cluster }

// KubernetesAuthMount is the per-cluster Kubernetes auth mount, without
// "auth/": one per cluster, because each verifies tokens with its own
// cluster's TokenReview API.
func KubernetesAuthMount(cluster string) string { return "kubernetes-" + cluster }

// AuthMountDescription is the description enrol gives the Kubernetes auth
// mount it creates for cluster. Vault keeps no other record of who made a
// mount, so this mark is what lets unenrol disable, and a later enrol
// reconfigure, only meshtrust's own mount for that cluster.
func AuthMountDescription(cluster string) string { return "meshtrust: cluster " + cluster }

// IntermediateCommonName is the CN of the cluster's intermediate: the
// Certificate asks for it and the policy pins it.
func IntermediateCommonName(cluster string) string { return cluster + " istio intermediate CA" }

// ClusterIssuerAudience is the service-account token audience a
// VaultClusterIssuer named name presents when its spec names none, as
// cert-manager's Vault issuer does; enrol's Kubernetes role expects it.
func ClusterIssuerAudience(name string) string { return "vault://" + name }

// IssuerAudience is the same for a namespaced VaultIssuer.
func IssuerAudience(namespace, name string) string { return "vault://" + namespace + "/" + name }

// TrustDomainURI is the intermediate's own URI SAN: its trust domain as a
// SPIFFE ID without a path.
func TrustDomainURI(trustDomain string) string { return "spiffe://" + trustDomain }

// The Kubernetes auth mount's stored reviewer token: enrol records the
// minted token's expiry and its auth mount on the reviewer ServiceAccount,
// where status reads them; enrol mints a new one, and status warns, within
// ReviewerTokenRenewBefore of that expiry.
const (
	ReviewerTokenExpiresAnnotation = "meshtrust.io/vault-reviewer-token-expires"
	ReviewerTokenMountAnnotation   = "meshtrust.io/vault-reviewer-token-mount"
	ReviewerTokenRenewBefore       = 30 * 24 * time.Hour
)
