package cli

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

type signed struct {
	cert *x509.Certificate
	key  crypto.Signer
	root *x509.Certificate
}

// provePinning signs with an enrolled cluster's own token: what its policy
// must allow works, and every way around the pinning is refused by Vault's
// ACL (HTTP 403), not by the PKI engine.
func provePinning(ctx context.Context, t *testing.T, vc *vaultapi.Client, cn, td, otherTD, rootPEM string) *signed {
	t.Helper()
	roots, err := pki.DecodeCertificates([]byte(rootPEM), pki.MaxChainPEMSize)
	if err != nil {
		t.Fatal(err)
	}
	key, req := csr(t, cn)
	// What a well-behaved issuer sends, with every parameter the policy lets
	// through. max_path_length is a string: Vault never matches a JSON
	// number against a policy value.
	good := func() map[string]any {
		return map[string]any{"csr": req, "common_name": cn, "permitted_uri_domains": []string{td}, "max_path_length": "0",
			"ttl": "2592000s", "format": "pem", "exclude_cn_from_sans": true, "use_csr_values": false, "uri_sans": "spiffe://" + td}
	}
	cert, err := signIntermediate(ctx, vc, signPath, good())
	if err != nil {
		t.Fatalf("signing for %s with the cluster's own token: %v", td, err)
	}
	if !slices.Equal(cert.PermittedURIDomains, []string{td}) || !cert.IsCA || !cert.MaxPathLenZero || cert.Subject.CommonName != cn {
		t.Errorf("intermediate: constraints %v isCA %v maxPathLenZero %v CN %q", cert.PermittedURIDomains, cert.IsCA, cert.MaxPathLenZero, cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(roots...), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("intermediate does not chain to the shared root: %v", err)
	}

	denied := []struct {
		name   string
		path   string
		change func(map[string]any)
	}{
		{"another trust domain", signPath, func(d map[string]any) { d["permitted_uri_domains"] = otherTD }},
		{"constraint left out", signPath, func(d map[string]any) { delete(d, "permitted_uri_domains") }},
		{"max_path_length=1", signPath, func(d map[string]any) { d["max_path_length"] = "1" }},
		{"max_path_length left out", signPath, func(d map[string]any) { delete(d, "max_path_length") }},
		{"foreign common name", signPath, func(d map[string]any) { d["common_name"] = "evil intermediate" }},
		{"use_csr_values", signPath, func(d map[string]any) { d["use_csr_values"] = true }},
		{"another URI SAN", signPath, func(d map[string]any) { d["uri_sans"] = "spiffe://" + otherTD }},
		{"alt_names", signPath, func(d map[string]any) { d["alt_names"] = "evil.example.com" }},
		{"extra permitted_dns_domains", signPath, func(d map[string]any) { d["permitted_dns_domains"] = "example.com" }},
		{"comma string of two domains", signPath, func(d map[string]any) { d["permitted_uri_domains"] = td + "," + otherTD }},
		{"list of two domains", signPath, func(d map[string]any) { d["permitted_uri_domains"] = []string{td, otherTD} }},
		{"empty string constraint", signPath, func(d map[string]any) { d["permitted_uri_domains"] = "" }},
		// Vault's ACL checks a list element by element, so an empty list would
		// pass allowed_parameters and yield an unconstrained CA; the policy's
		// denied_parameters must catch it.
		{"empty list constraint", signPath, func(d map[string]any) { d["permitted_uri_domains"] = []string{} }},
		{"list of an empty string", signPath, func(d map[string]any) { d["permitted_uri_domains"] = []string{""} }},
		{"blank comma string", signPath, func(d map[string]any) { d["permitted_uri_domains"] = " , " }},
		{"null constraint", signPath, func(d map[string]any) { d["permitted_uri_domains"] = nil }},
		{"empty list path length", signPath, func(d map[string]any) { d["max_path_length"] = []string{} }},
		{"issuer_ref override", signPath, func(d map[string]any) { d["issuer_ref"] = "default" }},
		{"root/sign-intermediate", "pki/root/sign-intermediate", func(map[string]any) {}},
		{"default issuer path", "pki/issuer/default/sign-intermediate", func(map[string]any) {}},
		{"root generation", "pki/root/generate/internal", func(map[string]any) {}},
	}
	for _, d := range denied {
		data := good()
		d.change(data)
		_, err := signIntermediate(ctx, vc, d.path, data)
		if !isForbidden(err) {
			t.Errorf("%s: want HTTP 403 from the policy, got %v", d.name, err)
		}
	}
	// The health check may read the issuer.
	if _, err := vc.Logical().ReadWithContext(ctx, "pki/issuer/meshtrust-root"); err != nil {
		t.Errorf("reading the issuer: %v", err)
	}
	// A JSON number for max_path_length never equals a policy value (Vault
	// decodes it as json.Number, the policy holds strings), so a caller must
	// send the string "0". Record what this Vault does.
	data := good()
	data["max_path_length"] = 0
	_, err = signIntermediate(ctx, vc, signPath, data)
	t.Logf("max_path_length as a JSON number: %v", errOrOK(err))
	return &signed{cert: cert, key: key, root: roots[0]}
}

func isForbidden(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func errOrOK(err error) string {
	if err == nil {
		return "accepted"
	}
	return oneLine(err)
}

// issuerRequestPasses checks that the request the issuer really sends
// (vaultcontract.SignRequest) is one enroll's policy lets through.
func issuerRequestPasses(ctx context.Context, t *testing.T, vc *vaultapi.Client, cn, td string) {
	t.Helper()
	_, req := csr(t, cn)
	ir := vaultcontract.SignRequest{Mount: "pki", IssuerRef: "meshtrust-root", CA: true, CSR: []byte(req), CommonName: cn,
		URISANs: []string{"spiffe://" + td}, TTL: 720 * time.Hour, MaxPathLength: 0, PermittedURIDomains: []string{td}}
	if ir.Path() != signPath {
		t.Errorf("the issuer signs at %s, the policy allows %s", ir.Path(), signPath)
	}
	if _, err := signIntermediate(ctx, vc, ir.Path(), ir.Body()); err != nil {
		t.Errorf("enroll's policy refuses the issuer's own request body %v: %v "+
			"(Vault never matches a JSON number against a policy value: max_path_length must be sent as the string \"0\")",
			redactCSR(ir.Body()), oneLine(err))
	}
}

func redactCSR(body map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		if k == "csr" {
			v = "<csr>"
		}
		out[k] = v
	}
	return out
}
