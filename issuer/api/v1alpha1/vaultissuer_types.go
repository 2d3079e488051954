package v1alpha1

import (
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VaultIssuer signs cert-manager CertificateRequests and Kubernetes
// CertificateSigningRequests with Vault's PKI secrets engine. It reads its
// Secrets and service account from its own namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=cert-manager
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].reason"
// +kubebuilder:printcolumn:name="Message",type="string",priority=1,JSONPath=".status.conditions[?(@.type==\"Ready\")].message"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type VaultIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VaultIssuerSpec        `json:"spec,omitempty"`
	Status issuerapi.IssuerStatus `json:"status,omitempty"`
}

// GetConditions implements issuer-lib's Issuer interface.
func (vi *VaultIssuer) GetConditions() []metav1.Condition {
	return vi.Status.Conditions
}

// GetIssuerTypeIdentifier implements issuer-lib's Issuer interface. It is
// the prefix of the signerName of Kubernetes CSRs addressed to this kind.
func (vi *VaultIssuer) GetIssuerTypeIdentifier() string {
	return "vaultissuers.meshtrust.io"
}

var _ issuerapi.Issuer = &VaultIssuer{}

// VaultIssuerList is a list of VaultIssuers.
//
// +kubebuilder:object:root=true
type VaultIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VaultIssuer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&VaultIssuer{}, &VaultIssuerList{})
}
