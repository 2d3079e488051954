package vaultadmin

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

func manifestOptions() ManifestOptions {
	return ManifestOptions{
		ClusterIssuerName: "meshtrust-vault", Server: "https://vault.example.com:8200",
		Mount: "pki", IssuerRef: "meshtrust-root", TrustDomain: "east.mesh",
		Kubernetes:      &v1alpha1.KubernetesAuth{MountPath: "kubernetes-east", Role: "meshtrust-east", ServiceAccountRef: v1alpha1.ServiceAccountRef{Name: "meshtrust-controller"}},
		CertificateName: "istio-ca", CertificateNamespace: "istio-system", SecretName: "meshtrust-istio-ca",
		CommonName: "east istio intermediate CA", Duration: 720 * time.Hour, RenewBefore: 240 * time.Hour,
	}
}

// The YAML decodes strictly (no unknown field) into the real API types, so
// it matches issuer/api/v1alpha1 and cert-manager exactly.
func TestYAMLMatchesAPITypes(t *testing.T) {
	out, err := ManifestsYAML(manifestOptions())
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "---\n")
	if len(docs) != 2 {
		t.Fatalf("want 2 documents, got %d:\n%s", len(docs), out)
	}
	var vci v1alpha1.VaultClusterIssuer
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &vci); err != nil {
		t.Fatalf("VaultClusterIssuer does not decode strictly: %v\n%s", err, docs[0])
	}
	var cert cmapi.Certificate
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &cert); err != nil {
		t.Fatalf("Certificate does not decode strictly: %v\n%s", err, docs[1])
	}
	if vci.APIVersion != "meshtrust.io/v1alpha1" || vci.Kind != "VaultClusterIssuer" || vci.Name != "meshtrust-vault" {
		t.Errorf("issuer identity: %s %s %s", vci.APIVersion, vci.Kind, vci.Name)
	}
	s := vci.Spec
	if s.Server != "https://vault.example.com:8200" || s.PKI.Mount != "pki" || s.PKI.IssuerRef != "meshtrust-root" ||
		s.Intermediate == nil || s.Intermediate.TrustDomain != "east.mesh" || s.Intermediate.MaxPathLength != 0 ||
		s.Auth.Kubernetes == nil || s.Auth.Kubernetes.MountPath != "kubernetes-east" || s.Auth.Kubernetes.Role != "meshtrust-east" ||
		s.Auth.AppRole != nil || s.Auth.TokenSecretRef != nil {
		t.Errorf("issuer spec: %+v", s)
	}
	c := cert.Spec
	if cert.Annotations[vaultcontract.OptInAnnotation] != "true" || !c.IsCA || c.CommonName != "east istio intermediate CA" ||
		len(c.URIs) != 1 || c.URIs[0] != "spiffe://east.mesh" || c.Duration.Duration != 720*time.Hour || c.RenewBefore.Duration != 240*time.Hour ||
		c.IssuerRef.Group != "meshtrust.io" || c.IssuerRef.Kind != "VaultClusterIssuer" || c.IssuerRef.Name != "meshtrust-vault" ||
		cert.Namespace != "istio-system" || c.SecretName != "meshtrust-istio-ca" {
		t.Errorf("certificate: %+v %+v", cert.ObjectMeta, c)
	}
	if bytes.Contains(out, []byte("status")) || bytes.Contains(out, []byte("creationTimestamp")) {
		t.Errorf("manifest carries server-side fields:\n%s", out)
	}
}

func TestAppRoleAndJSON(t *testing.T) {
	o := manifestOptions()
	o.Kubernetes = nil
	o.AppRole = &v1alpha1.AppRoleAuth{MountPath: "approle", RoleID: "role-id-1", SecretRef: v1alpha1.SecretKeySelector{Name: "meshtrust-vault-approle", Key: "secret-id"}}
	out, err := ManifestsJSON(o)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string
		Items []json.RawMessage
	}
	if err := json.Unmarshal(out, &list); err != nil || list.Kind != "List" || len(list.Items) != 2 {
		t.Fatalf("not a 2-item List: %v\n%s", err, out)
	}
	var vci v1alpha1.VaultClusterIssuer
	if err := json.Unmarshal(list.Items[0], &vci); err != nil || vci.Spec.Auth.AppRole == nil || vci.Spec.Auth.AppRole.RoleID != "role-id-1" || vci.Spec.Auth.Kubernetes != nil {
		t.Errorf("approle issuer: %v %+v", err, vci.Spec.Auth)
	}
	o.Kubernetes = &v1alpha1.KubernetesAuth{}
	if _, err := ManifestsYAML(o); err == nil {
		t.Error("two auth methods accepted")
	}
}
