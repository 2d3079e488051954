// Package v1alpha1 holds the meshtrust.io/v1alpha1 API: the VaultIssuer and
// VaultClusterIssuer kinds served by the meshtrust cert-manager external issuer.
//
// +kubebuilder:object:generate=true
// +groupName=meshtrust.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "meshtrust.io", Version: "v1alpha1"}

	// SchemeBuilder registers this package's kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
