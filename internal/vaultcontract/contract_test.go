package vaultcontract_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmpki "github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/cert-manager/issuer-lib/controllers/signer"

	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer"
)

// enrolled is `meshtrust vault enroll --cluster east --trust-domain
// east.mesh` with the CLI's defaults.
func enrolled() vaultadmin.EnrollOptions {
	o := vaultadmin.EnrollOptions{
		Cluster: "east", TrustDomain: "east.mesh", IssuerRef: "meshtrust-root", Auth: vaultadmin.AuthKubernetes,
		Kubernetes: vaultadmin.KubernetesAuth{ServiceAccount: "meshtrust-controller", Namespace: "meshtrust-system"},
		Manifests: vaultadmin.ManifestSettings{ClusterIssuerName: "meshtrust-vault", CertificateName: "istio-ca", CertificateNamespace: "istio-system",
			SecretName: "meshtrust-istio-ca", Duration: 720 * time.Hour, RenewBefore: 240 * time.Hour},
	}
	o.Default()
	return o
}

// issuerRequest is what the issuer sends to Vault for the Certificate
// enrol's manifests render: the Certificate goes through cert-manager's own
// CSR builder and CertificateRequest fields, issuer-lib's request reader and
// the issuer's request builder, as in the cluster.
func issuerRequest(t *testing.T, o vaultadmin.EnrollOptions) vaultcontract.SignRequest {
	t.Helper()
	vci, crt, err := vaultadmin.ManifestObjects(o.ManifestOptions("", "https://vault.example.com:8200"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := cmpki.GenerateCSR(crt)
	if err != nil {
		t.Fatalf("cert-manager cannot build a CSR for enrol's Certificate: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := cmpki.EncodeCSR(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	cr := &cmapi.CertificateRequest{Spec: cmapi.CertificateRequestSpec{
		Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		IsCA:    crt.Spec.IsCA, Duration: crt.Spec.Duration, Usages: crt.Spec.Usages, IssuerRef: crt.Spec.IssuerRef,
	}}
	details, err := signer.CertificateRequestObjectFromCertificateRequest(cr).GetCertificateDetails()
	if err != nil {
		t.Fatal(err)
	}
	req, _, err := issuer.SignRequestFor(&vci.Spec, details)
	if err != nil {
		t.Fatalf("the issuer refuses enrol's own Certificate: %v", err)
	}
	return req
}

// TestEnrolPolicyAllowsExactlyTheIssuersRequest is the contract, offline:
// the body the issuer builds for enrol's Certificate is what enrol's policy
// lets through, and every way around the pinning is refused, the way
// Vault's ACL decides it. A change to either half, the issuer's request or
// the policy, fails here in milliseconds, before the e2e/cli test proves
// the same against a real Vault.
func TestEnrolPolicyAllowsExactlyTheIssuersRequest(t *testing.T) {
	o := enrolled()
	policy := o.Policy().HCL()
	req := issuerRequest(t, o)
	if req.Path() != o.Policy().SignPath() {
		t.Fatalf("the issuer signs at %s, the policy allows %s", req.Path(), o.Policy().SignPath())
	}
	if ok, why := allows(policy, req.Path(), vaultBody(req.Body())); !ok {
		t.Fatalf("enrol's policy refuses the issuer's own request: %s\npolicy:\n%s\nbody: %v", why, policy, redacted(req.Body()))
	}

	// The issuer's half changes: each body must be refused.
	bodies := []struct {
		name   string
		change func(map[string]any)
	}{
		{"another trust domain", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = []string{"west.mesh"} }},
		{"constraint left out", func(b map[string]any) { delete(b, vaultcontract.ParamPermittedURIDomains) }},
		{"max_path_length as a JSON number", func(b map[string]any) { b[vaultcontract.ParamMaxPathLength] = 0 }},
		{"max_path_length=1", func(b map[string]any) { b[vaultcontract.ParamMaxPathLength] = "1" }},
		{"max_path_length left out", func(b map[string]any) { delete(b, vaultcontract.ParamMaxPathLength) }},
		{"foreign common name", func(b map[string]any) { b[vaultcontract.ParamCommonName] = "evil intermediate" }},
		{"common name left out", func(b map[string]any) { delete(b, vaultcontract.ParamCommonName) }},
		{"use_csr_values", func(b map[string]any) { b[vaultcontract.ParamUseCSRValues] = true }},
		{"another URI SAN", func(b map[string]any) { b[vaultcontract.ParamURISANs] = "spiffe://west.mesh" }},
		{"alt_names", func(b map[string]any) { b[vaultcontract.ParamAltNames] = "evil.example.com" }},
		{"permitted_dns_domains", func(b map[string]any) { b["permitted_dns_domains"] = "example.com" }},
		{"comma string of two domains", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = "east.mesh,west.mesh" }},
		{"list of two domains", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = []string{"east.mesh", "west.mesh"} }},
		{"empty string constraint", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = "" }},
		{"empty list constraint", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = []string{} }},
		{"list of an empty string", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = []string{""} }},
		{"blank comma string", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = " , " }},
		{"null constraint", func(b map[string]any) { b[vaultcontract.ParamPermittedURIDomains] = nil }},
		{"empty list path length", func(b map[string]any) { b[vaultcontract.ParamMaxPathLength] = []string{} }},
		{"issuer_ref override", func(b map[string]any) { b["issuer_ref"] = "default" }},
		{"format der", func(b map[string]any) { b[vaultcontract.ParamFormat] = "der" }},
	}
	for _, tc := range bodies {
		t.Run("body/"+tc.name, func(t *testing.T) {
			b := req.Body()
			tc.change(b)
			if ok, _ := allows(policy, req.Path(), vaultBody(b)); ok {
				t.Errorf("enrol's policy lets through a request with %s: %v", tc.name, redacted(b))
			}
		})
	}
	for _, path := range []string{"pki/root/sign-intermediate", "pki/issuer/default/sign-intermediate", "pki/issuer/other-root/sign-intermediate", "pki/root/generate/internal"} {
		t.Run("path/"+path, func(t *testing.T) {
			if ok, _ := allows(policy, path, vaultBody(req.Body())); ok {
				t.Errorf("enrol's policy lets the cluster write %s", path)
			}
		})
	}

	// The policy's half changes: each policy must refuse the issuer's body.
	policies := []struct {
		name   string
		policy string
	}{
		{"another trust domain", withOptions(func(o *vaultadmin.EnrollOptions) { o.TrustDomain = "west.mesh" })},
		{"another common name", withOptions(func(o *vaultadmin.EnrollOptions) { o.CommonName = "west istio intermediate CA" })},
		{"another issuer", withOptions(func(o *vaultadmin.EnrollOptions) { o.IssuerRef = "meshtrust-root-2" })},
		{"another mount", withOptions(func(o *vaultadmin.EnrollOptions) { o.Mount = "pki-mesh" })},
		{"max_path_length pinned as a number", strings.Replace(policy, `"max_path_length" = ["0"]`, `"max_path_length" = [0]`, 1)},
		{"uri_sans no longer allowed", strings.Replace(policy, `    "uri_sans" = ["spiffe://east.mesh"]`+"\n", "", 1)},
		{"use_csr_values pinned true", strings.Replace(policy, `"use_csr_values" = [false]`, `"use_csr_values" = [true]`, 1)},
		{"read only", strings.Replace(policy, `capabilities = ["update"]`, `capabilities = ["read"]`, 1)},
		{"ttl not allowed", strings.Replace(policy, `    "ttl" = []`+"\n", "", 1)},
	}
	for _, tc := range policies {
		t.Run("policy/"+tc.name, func(t *testing.T) {
			if tc.policy == policy {
				t.Fatal("the mutation did not change the policy")
			}
			if ok, _ := allows(tc.policy, req.Path(), vaultBody(req.Body())); ok {
				t.Errorf("a policy with %s still lets the issuer's request through:\n%s", tc.name, tc.policy)
			}
		})
	}
}

func withOptions(change func(*vaultadmin.EnrollOptions)) string {
	o := enrolled()
	change(&o)
	return o.Policy().HCL()
}

// The issuer's request for every trust domain and issuer the CLI accepts
// is allowed by the policy enrol writes for it.
func TestEnrolPolicyAllowsTheIssuerAcrossOptions(t *testing.T) {
	for _, tc := range []struct{ cluster, td, ref, mount string }{
		{"kind2", "kind2", "meshtrust-root", "pki"},
		{"east", "east.mesh", "", "pki"},
		{"west", "a-b.west.example", "meshtrust-root-2", "pki-mesh"},
	} {
		o := enrolled()
		o.Cluster, o.TrustDomain, o.IssuerRef, o.Mount = tc.cluster, tc.td, tc.ref, tc.mount
		o.CommonName = ""
		o.Default()
		req := issuerRequest(t, o)
		if ok, why := allows(o.Policy().HCL(), req.Path(), vaultBody(req.Body())); !ok {
			t.Errorf("%+v: refused: %s", tc, why)
		}
	}
}

func redacted(body map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		if k == vaultcontract.ParamCSR {
			v = "<csr>"
		}
		out[k] = v
	}
	return out
}

// capable reports whether the block Vault applies to path grants capability.
func capable(t *testing.T, policy, path, capability string) bool {
	t.Helper()
	paths, err := parsePolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := matchPath(paths, path)
	return ok && slices.Contains(p.Capabilities, capability) && !slices.Contains(p.Capabilities, "deny")
}

// The CRL exchange: the issuer writes its cluster's entry (create, then
// update) and reads and lists everyone's, and may write no other
// cluster's, which would let one cluster withdraw another's CRL from the
// mesh.
func TestEnrolPolicyLimitsTheCRLExchange(t *testing.T) {
	o := enrolled()
	policy := o.Policy().HCL()
	own := vaultcontract.CRLExchangePath(o.TrustDomain)
	body := vaultBody(map[string]any{vaultcontract.CRLEntryPEM: "-----BEGIN X509 CRL-----", vaultcontract.CRLEntryUpdated: "2026-12-01T00:00:00Z"})
	if ok, why := allows(policy, own, body); !ok {
		t.Errorf("the issuer may not update its own entry %s: %s", own, why)
	}
	for _, c := range []string{"create", "read"} {
		if !capable(t, policy, own, c) {
			t.Errorf("no %s on its own entry %s", c, own)
		}
	}
	peer := vaultcontract.CRLExchangePath("west.mesh")
	for _, c := range []string{"create", "update", "delete"} {
		if capable(t, policy, peer, c) {
			t.Errorf("%s allowed on another cluster's entry %s:\n%s", c, peer, policy)
		}
	}
	if !capable(t, policy, peer, "read") || !capable(t, policy, vaultcontract.CRLExchangeMount+"/", "list") {
		t.Errorf("the issuer may not read the other entries or list the mount:\n%s", policy)
	}
	// A trust domain that is a prefix of another's gets no write on it.
	if capable(t, policy, vaultcontract.CRLExchangePath(o.TrustDomain+"x"), "update") {
		t.Error("update allowed on an entry whose name merely starts with the trust domain")
	}
}
