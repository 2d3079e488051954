package vaultadmin

// The Kubernetes objects an enrolled cluster applies: its VaultClusterIssuer
// and the Certificate for its Istio intermediate, opted in to the syncer.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// ManifestOptions is everything the manifests depend on.
type ManifestOptions struct {
	// ClusterIssuerName names the VaultClusterIssuer.
	ClusterIssuerName string
	// Server is Vault's address as the cluster reaches it.
	Server string
	// VaultNamespace is the Vault Enterprise namespace; empty for none.
	VaultNamespace string
	// CABundle is the PEM CA that verifies Vault's TLS certificate; empty for
	// the system trust store (or plain http).
	CABundle []byte
	// Mount and IssuerRef select the PKI mount and the issuer that signs.
	Mount, IssuerRef string
	// TrustDomain is the cluster's SPIFFE trust domain.
	TrustDomain string

	// Kubernetes, when set, makes the issuer log in with kubernetes auth.
	Kubernetes *v1alpha1.KubernetesAuth
	// AppRole, when set, makes the issuer log in with AppRole.
	AppRole *v1alpha1.AppRoleAuth

	// CertificateName and CertificateNamespace place the Certificate.
	CertificateName, CertificateNamespace string
	// SecretName is where cert-manager writes the intermediate.
	SecretName string
	// CommonName is the intermediate's CN; it must match the Vault policy.
	CommonName string
	// Duration and RenewBefore set the intermediate's lifetime and when
	// cert-manager renews it.
	Duration, RenewBefore time.Duration
}

// ManifestObjects builds the VaultClusterIssuer and the Certificate.
func ManifestObjects(o ManifestOptions) (*v1alpha1.VaultClusterIssuer, *cmapi.Certificate, error) {
	if (o.Kubernetes == nil) == (o.AppRole == nil) {
		return nil, nil, fmt.Errorf("exactly one of kubernetes and appRole auth must be set")
	}
	vci := &v1alpha1.VaultClusterIssuer{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "VaultClusterIssuer"},
		ObjectMeta: metav1.ObjectMeta{Name: o.ClusterIssuerName},
		Spec: v1alpha1.VaultIssuerSpec{
			Server:       o.Server,
			Namespace:    o.VaultNamespace,
			CABundle:     o.CABundle,
			PKI:          v1alpha1.PKISpec{Mount: o.Mount, IssuerRef: o.IssuerRef},
			Intermediate: &v1alpha1.IntermediateSpec{TrustDomain: o.TrustDomain, MaxPathLength: 0},
			Auth:         v1alpha1.VaultAuth{Kubernetes: o.Kubernetes, AppRole: o.AppRole},
		},
	}
	cert := &cmapi.Certificate{
		TypeMeta: metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateKind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        o.CertificateName,
			Namespace:   o.CertificateNamespace,
			Annotations: map[string]string{vaultcontract.OptInAnnotation: "true"},
		},
		Spec: cmapi.CertificateSpec{
			IsCA:        true,
			CommonName:  o.CommonName,
			URIs:        []string{vaultcontract.TrustDomainURI(o.TrustDomain)},
			Duration:    &metav1.Duration{Duration: o.Duration},
			RenewBefore: &metav1.Duration{Duration: o.RenewBefore},
			SecretName:  o.SecretName,
			PrivateKey: &cmapi.CertificatePrivateKey{
				Algorithm: cmapi.ECDSAKeyAlgorithm,
				Size:      256,
				// A new key on every renewal: the intermediate key lives in
				// the cluster, so rotating it costs nothing.
				RotationPolicy: cmapi.RotationPolicyAlways,
			},
			Usages: []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign, cmapi.UsageDigitalSignature},
			IssuerRef: cmmeta.IssuerReference{
				Group: v1alpha1.GroupVersion.Group,
				Kind:  "VaultClusterIssuer",
				Name:  o.ClusterIssuerName,
			},
		},
	}
	return vci, cert, nil
}

// ManifestsYAML renders the objects as one multi-document YAML stream, ready for
// kubectl apply -f -.
func ManifestsYAML(o ManifestOptions) ([]byte, error) {
	docs, err := clean(o)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("rendering manifest: %w", err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

// ManifestsJSON renders the objects as a v1 List.
func ManifestsJSON(o ManifestOptions) ([]byte, error) {
	docs, err := clean(o)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": docs}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("rendering manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// clean turns the typed objects into maps without the fields a client never
// writes (status, a null creationTimestamp), so the output reads like a
// hand-written manifest.
func clean(o ManifestOptions) ([]map[string]any, error) {
	vci, cert, err := ManifestObjects(o)
	if err != nil {
		return nil, err
	}
	var docs []map[string]any
	for _, obj := range []any{vci, cert} {
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("rendering manifest: %w", err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("rendering manifest: %w", err)
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		docs = append(docs, m)
	}
	return docs, nil
}
