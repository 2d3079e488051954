package decision

import (
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseIssuerRef(t *testing.T) {
	for in, want := range map[string]string{
		"VaultClusterIssuer.meshtrust.io":     "VaultClusterIssuer.meshtrust.io",
		"Issuer.cert-manager.io/mesh-ca":      "Issuer.cert-manager.io/mesh-ca",
		" ClusterIssuer.cert-manager.io/ca  ": "ClusterIssuer.cert-manager.io/ca",
		"":                                    "invalid",
		"VaultClusterIssuer":                  "invalid",
		"vaultclusterissuers.meshtrust.io":    "invalid",
		".meshtrust.io":                       "invalid",
		"Issuer.cert-manager.io/a/b":          "invalid",
	} {
		ref, err := ParseIssuerRef(in)
		got := ref.String()
		if err != nil {
			got = "invalid"
		}
		if got != want {
			t.Errorf("ParseIssuerRef(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

func TestIssuerAllowed(t *testing.T) {
	crt := func(ref cmmeta.IssuerReference) *cmapi.Certificate {
		return &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ca"}, Spec: cmapi.CertificateSpec{IssuerRef: ref}}
	}
	caIssuer, err := ParseIssuerRef("Issuer.cert-manager.io/mesh-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		ref     cmmeta.IssuerReference
		allowed []IssuerRef
		ok      bool
	}{
		{"meshtrust's cluster issuer", cmmeta.IssuerReference{Group: "meshtrust.io", Kind: "VaultClusterIssuer", Name: "x"}, DefaultAllowedIssuers(), true},
		{"meshtrust's namespaced issuer", cmmeta.IssuerReference{Group: "meshtrust.io", Kind: "VaultIssuer", Name: "y"}, DefaultAllowedIssuers(), true},
		{"a SelfSigned or CA Issuer, kind and group left to cert-manager's defaults", cmmeta.IssuerReference{Name: "selfsigned"}, DefaultAllowedIssuers(), false},
		{"a ClusterIssuer", cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "ca"}, DefaultAllowedIssuers(), false},
		{"another group's VaultClusterIssuer", cmmeta.IssuerReference{Group: "example.com", Kind: "VaultClusterIssuer", Name: "x"}, DefaultAllowedIssuers(), false},
		{"a CA issuer allowed by name", cmmeta.IssuerReference{Name: "mesh-ca"}, []IssuerRef{caIssuer}, true},
		{"another CA issuer of the allowed kind", cmmeta.IssuerReference{Name: "other-ca"}, []IssuerRef{caIssuer}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := IssuerAllowed(Input{Certificate: crt(tc.ref), AllowedIssuers: tc.allowed})
			if (r == nil) != tc.ok {
				t.Fatalf("IssuerAllowed = %+v, want allowed=%v", r, tc.ok)
			}
			if r != nil && (r.Reason != ReasonIssuerNotAllowed || !strings.Contains(r.Message, "istio-system/istio-ca") || !strings.Contains(r.Message, "spec.issuerRef")) {
				t.Errorf("refusal %+v does not name the Certificate and the field", r)
			}
		})
	}
}
