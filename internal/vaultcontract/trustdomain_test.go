package vaultcontract

import (
	"crypto/x509"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// trustDomainCases is the one table the CLI's validator and the CRD's
// schema are both held to. why empty means valid.
var trustDomainCases = []struct {
	td, why string
}{
	{td: "east.mesh"},
	{td: "kind2"},
	{td: "a-b.c0.example"},
	{td: strings.Repeat("a", 63) + ".mesh"},
	{td: strings.Repeat(strings.Repeat("a", 49)+".", 5) + "mes"}, // 253 characters
	{td: "", why: "empty"},
	{td: "spiffe://east.mesh", why: "scheme"},
	{td: "east.mesh/ns", why: "path"},
	{td: "east.mesh:443", why: "port"},
	{td: "*.mesh", why: "wildcard"},
	{td: "east.mesh,west.mesh", why: "more than one"},
	{td: "east.mesh west.mesh", why: "more than one"},
	{td: ".mesh", why: "dot"},
	{td: "east.", why: "dot"},
	{td: "East.mesh", why: "uppercase"},
	{td: "east..mesh", why: "empty label"},
	{td: "-east.mesh", why: "character"},
	{td: "east-.mesh", why: "character"},
	{td: "east_1.mesh", why: "character"},
	{td: strings.Repeat("a", 64) + ".mesh", why: "longer than 63"},
	{td: strings.Repeat(strings.Repeat("a", 50)+".", 5) + "mesh", why: "longer than 253"},
}

func TestValidateTrustDomain(t *testing.T) {
	for _, tc := range trustDomainCases {
		err := ValidateTrustDomain(tc.td)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("ValidateTrustDomain(%q) = %v, want valid", tc.td, err)
		case tc.why != "" && (err == nil || !strings.Contains(err.Error(), tc.why)):
			t.Errorf("ValidateTrustDomain(%q) = %v, want an error about %q", tc.td, err, tc.why)
		}
	}
}

// crdRule is spec.intermediate.trustDomain's schema in a generated CRD.
type crdRule struct {
	pattern              *regexp.Regexp
	minLength, maxLength int
}

// accepts is what the API server's OpenAPI validation does with the rule
// (kube-openapi compiles patterns with Go's regexp).
func (r crdRule) accepts(td string) bool {
	return len(td) >= r.minLength && len(td) <= r.maxLength && r.pattern.MatchString(td)
}

func loadCRDRules(t testing.TB) map[string]crdRule {
	t.Helper()
	out := map[string]crdRule{}
	for _, name := range []string{"meshtrust.io_vaultissuers.yaml", "meshtrust.io_vaultclusterissuers.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "crds", name))
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Versions []struct {
					Schema struct {
						OpenAPIV3Schema schema `json:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, v := range crd.Spec.Versions {
			td := v.Schema.OpenAPIV3Schema.Properties["spec"].Properties["intermediate"].Properties["trustDomain"]
			if td.Pattern == "" {
				t.Fatalf("%s: spec.intermediate.trustDomain has no pattern", name)
			}
			out[name] = crdRule{pattern: regexp.MustCompile(td.Pattern), minLength: td.MinLength, maxLength: td.MaxLength}
			if td.Pattern != TrustDomainPattern || td.MaxLength != MaxTrustDomainLength {
				t.Errorf("%s: trustDomain pattern %q maxLength %d; want TrustDomainPattern and MaxTrustDomainLength (%d): edit the marker in issuer/api/v1alpha1 and run make generate",
					name, td.Pattern, td.MaxLength, MaxTrustDomainLength)
			}
		}
	}
	return out
}

type schema struct {
	Properties map[string]schema `json:"properties"`
	Pattern    string            `json:"pattern"`
	MinLength  int               `json:"minLength"`
	MaxLength  int               `json:"maxLength"`
}

// The CRD refuses exactly what the CLI refuses, so that an issuer cannot be
// created with a trust domain enrol would never write a policy for.
func TestCRDTrustDomainRuleIsValidateTrustDomain(t *testing.T) {
	for name, rule := range loadCRDRules(t) {
		for _, tc := range trustDomainCases {
			if got, want := rule.accepts(tc.td), tc.why == ""; got != want {
				t.Errorf("%s accepts %q: %v, ValidateTrustDomain: %v", name, tc.td, got, want)
			}
		}
	}
}

func FuzzTrustDomainRules(f *testing.F) {
	for _, tc := range trustDomainCases {
		f.Add(tc.td)
	}
	rules := loadCRDRules(f)
	f.Fuzz(func(t *testing.T, td string) {
		ok := ValidateTrustDomain(td) == nil
		// Whatever passes is safe in a policy, a URI and a name constraint.
		if ok && (strings.ContainsAny(td, "\",:/*\\ \n{}[]") || strings.ToLower(td) != td || td == "") {
			t.Fatalf("accepted unsafe trust domain %q", td)
		}
		for name, rule := range rules {
			if rule.accepts(td) != ok {
				t.Fatalf("%s accepts %q: %v, ValidateTrustDomain: %v", name, td, rule.accepts(td), ok)
			}
		}
	})
}

func TestValidateClusterName(t *testing.T) {
	for name, ok := range map[string]bool{"east": true, "kind-2": true, "": false, "East": false, "a/b": false, "a.b": false, strings.Repeat("a", 41): false} {
		if err := ValidateClusterName(name); (err == nil) != ok {
			t.Errorf("ValidateClusterName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// overlapCases are pairs of trust domains and how the first relates to the
// second.
var overlapCases = []struct{ td, other, want string }{
	{"east.mesh", "east.mesh", "equals"},
	{"mesh", "east.mesh", "contains"},
	{"mesh", "a.b.mesh", "contains"},
	{"east.mesh", "mesh", "falls under"},
	{"east.mesh", "west.mesh", ""},
	{"mesh", "xmesh", ""},
	{"east.mesh", "beast.mesh", ""},
	{"kind2", "kind3", ""},
	{"east.mesh", "east.mesh.org", ""},
	{"mesh.org", "east.mesh.org", "contains"},
	{"Mesh", "east.mesh", "contains"},
}

func TestOverlap(t *testing.T) {
	for _, tc := range overlapCases {
		if got := Overlap(tc.td, tc.other); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %q, want %q", tc.td, tc.other, got, tc.want)
		}
	}
}

// The rule is crypto/x509's, not ours: for every pair, an intermediate
// constrained to one trust domain verifies a workload certificate of the
// other exactly when Covers says so. This is the check that makes
// "overlap" mean "these clusters can forge each other's identities".
func TestCoversIsWhatX509Enforces(t *testing.T) {
	now := time.Now()
	root := pkitest.New(t, now, pkitest.Spec{CN: "root"}, nil)
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	for _, tc := range overlapCases {
		for _, pair := range [][2]string{{tc.td, tc.other}, {tc.other, tc.td}} {
			constraint, td := pair[0], pair[1]
			inter := pkitest.New(t, now, pkitest.Spec{CN: constraint + " intermediate", MaxPathLenZero: true, PermittedURIDomains: []string{constraint}}, root)
			id, err := url.Parse("spiffe://" + td + "/ns/default/sa/default")
			if err != nil {
				t.Fatal(err)
			}
			leafKey := pkitest.ECKey(t)
			leaf := pkitest.Create(t, &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
				URIs: []*url.URL{id}, KeyUsage: x509.KeyUsageDigitalSignature}, inter.Cert, leafKey.Public(), inter.Key)
			pool := x509.NewCertPool()
			pool.AddCert(inter.Cert)
			_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if got := verr == nil; got != Covers(constraint, td) {
				t.Errorf("x509 accepts spiffe://%s under a %q constraint: %v (err %v); Covers says %v", td, constraint, got, verr, Covers(constraint, td))
			}
		}
	}
}
