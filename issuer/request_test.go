package issuer

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

func TestBuildSignRequest(t *testing.T) {
	key := pkitest.ECKey(t)
	caCSR := pkitest.URICSR(t, key, "east.mesh intermediate", "spiffe://east.mesh")
	leafCSR := pkitest.URICSR(t, key, "", "spiffe://east.mesh/ns/a/sa/b")
	withTD := func(td string, maxPath int32) *v1alpha1.VaultIssuerSpec {
		return &v1alpha1.VaultIssuerSpec{
			PKI:          v1alpha1.PKISpec{Mount: "pki_int", Role: "workloads"},
			Intermediate: &v1alpha1.IntermediateSpec{TrustDomain: td, MaxPathLength: maxPath},
		}
	}
	tests := []struct {
		name      string
		spec      *v1alpha1.VaultIssuerSpec
		csr       []byte
		isCA      bool
		wantPath  string
		wantBody  map[string]any
		wantField string
	}{
		{
			name: "CA request to the default issuer", spec: withTD("east.mesh", 0), csr: caCSR, isCA: true,
			wantPath: "pki_int/root/sign-intermediate",
			wantBody: map[string]any{
				"common_name": "east.mesh intermediate", "format": "pem", "exclude_cn_from_sans": true,
				"uri_sans": "spiffe://east.mesh", "ttl": "7200s", "use_csr_values": false,
				"max_path_length": "0", "permitted_uri_domains": []string{"east.mesh"},
			},
		},
		{
			name: "CA request to a named issuer with path length 1",
			spec: func() *v1alpha1.VaultIssuerSpec {
				s := withTD("east.mesh", 1)
				s.PKI.IssuerRef = "root-2026"
				return s
			}(), csr: caCSR, isCA: true,
			wantPath: "pki_int/issuer/root-2026/sign-intermediate",
			wantBody: map[string]any{
				"common_name": "east.mesh intermediate", "format": "pem", "exclude_cn_from_sans": true,
				"uri_sans": "spiffe://east.mesh", "ttl": "7200s", "use_csr_values": false,
				"max_path_length": "1", "permitted_uri_domains": []string{"east.mesh"},
			},
		},
		{name: "CA request without intermediate settings", spec: &v1alpha1.VaultIssuerSpec{}, csr: caCSR, isCA: true, wantField: "spec.intermediate.trustDomain"},
		{name: "CA request for another trust domain", spec: withTD("west.mesh", 0), csr: caCSR, isCA: true, wantField: "spec.request"},
		{name: "CA request with a path", spec: withTD("east.mesh", 0), csr: pkitest.URICSR(t, key, "x", "spiffe://east.mesh/ns"), isCA: true, wantField: "spec.request"},
		{name: "CA request with a DNS name", spec: withTD("east.mesh", 0), csr: caCSRWith(t, &x509.CertificateRequest{DNSNames: []string{"istiod.istio-system.svc"}}), isCA: true, wantField: "spec.request"},
		{name: "CA request with an IP address", spec: withTD("east.mesh", 0), csr: caCSRWith(t, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}), isCA: true, wantField: "spec.request"},
		{name: "CA request with an email address", spec: withTD("east.mesh", 0), csr: caCSRWith(t, &x509.CertificateRequest{EmailAddresses: []string{"ca@east.mesh"}}), isCA: true, wantField: "spec.request"},
		{name: "CA request without common name", spec: withTD("east.mesh", 0), csr: pkitest.URICSR(t, key, "", "spiffe://east.mesh"), isCA: true, wantField: "spec.request"},
		{
			name: "leaf request", spec: withTD("east.mesh", 0), csr: leafCSR,
			wantPath: "pki_int/sign/workloads",
			wantBody: map[string]any{
				"common_name": "", "format": "pem", "exclude_cn_from_sans": true,
				"uri_sans": "spiffe://east.mesh/ns/a/sa/b", "ttl": "7200s",
			},
		},
		{
			name: "leaf request to a named issuer and default mount",
			spec: &v1alpha1.VaultIssuerSpec{PKI: v1alpha1.PKISpec{IssuerRef: "int", Role: "web"}},
			csr:  pkitest.URICSR(t, key, "web"), wantPath: "pki/issuer/int/sign/web",
			wantBody: map[string]any{"common_name": "web", "format": "pem", "exclude_cn_from_sans": true, "ttl": "7200s"},
		},
		{name: "leaf request without role", spec: &v1alpha1.VaultIssuerSpec{}, csr: leafCSR, wantField: "spec.pki.role"},
		{name: "leaf request outside the trust domain", spec: withTD("west.mesh", 0), csr: leafCSR, wantField: "spec.request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR(tc.csr)
			if err != nil {
				t.Fatal(err)
			}
			req, err := BuildSignRequest(SignInput{Spec: tc.spec, CSRPEM: tc.csr, CSR: csr, IsCA: tc.isCA, Duration: 2 * time.Hour})
			if tc.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("error = %v, want a FieldError on %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := req.Path(); got != tc.wantPath {
				t.Errorf("path = %q, want %q", got, tc.wantPath)
			}
			body := req.Body()
			if body["csr"] != string(tc.csr) {
				t.Errorf("body csr is not the request's CSR")
			}
			delete(body, "csr")
			if !reflect.DeepEqual(body, tc.wantBody) {
				t.Errorf("body = %#v\nwant %#v", body, tc.wantBody)
			}
		})
	}
}

// caCSRWith is an east.mesh intermediate request with tmpl's other names.
func caCSRWith(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	tmpl.Subject = pkix.Name{CommonName: "east.mesh intermediate"}
	tmpl.URIs = mustURLs(t, "spiffe://east.mesh")
	_, csr := pkitest.CSR(t, tmpl)
	return csr
}

func TestCheckServer(t *testing.T) {
	tests := []struct {
		server string
		ok     bool
	}{
		{"https://vault.example.com:8200", true},
		{"https://10.0.0.5:8200", true},
		{"http://127.0.0.1:8200", true},
		{"http://127.9.9.9:8200", true},
		{"http://[::1]:8200", true},
		{"http://localhost:8200", true},
		{"http://vault.vault.svc:8200", false},
		{"http://10.0.0.5:8200", false},
		{"http://localhost.attacker.example:8200", false},
		{"http://127.0.0.1.nip.io:8200", false},
		{"ftp://vault:21", false},
		{"://", false},
	}
	for _, tc := range tests {
		err := CheckServer(tc.server)
		var fe *FieldError
		switch {
		case tc.ok && err != nil:
			t.Errorf("CheckServer(%q) = %v, want ok", tc.server, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Field != "spec.server"):
			t.Errorf("CheckServer(%q) = %v, want a FieldError on spec.server", tc.server, err)
		}
	}
}
