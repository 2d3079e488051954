package v1alpha1

import (
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VaultClusterIssuer is the cluster-scoped VaultIssuer. It reads its Secrets
// and service account from the controller's cluster resource namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=cert-manager
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].reason"
// +kubebuilder:printcolumn:name="Message",type="string",priority=1,JSONPath=".status.conditions[?(@.type==\"Ready\")].message"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type VaultClusterIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VaultIssuerSpec        `json:"spec,omitempty"`
	Status issuerapi.IssuerStatus `json:"status,omitempty"`
}

// GetConditions implements issuer-lib's Issuer interface.
func (vi *VaultClusterIssuer) GetConditions() []metav1.Condition {
	return vi.Status.Conditions
}

// GetIssuerTypeIdentifier implements issuer-lib's Issuer interface. It is
// the prefix of the signerName of Kubernetes CSRs addressed to this kind.
func (vi *VaultClusterIssuer) GetIssuerTypeIdentifier() string {
	return "vaultclusterissuers.meshtrust.io"
}

var _ issuerapi.Issuer = &VaultClusterIssuer{}

// VaultClusterIssuerList is a list of VaultClusterIssuers.
//
// +kubebuilder:object:root=true
type VaultClusterIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VaultClusterIssuer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&VaultClusterIssuer{}, &VaultClusterIssuerList{})
}
