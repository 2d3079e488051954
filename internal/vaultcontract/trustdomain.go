package vaultcontract

import (
	"fmt"
	"strings"
)

// TrustDomainPattern and MaxTrustDomainLength are ValidateTrustDomain as an
// OpenAPI pattern and maxLength, which the CRD's spec.intermediate.trustDomain
// carries (issuer/api/v1alpha1, a kubebuilder marker cannot name a
// constant): dot-separated DNS labels of lowercase letters, digits and inner
// hyphens, each at most 63 characters. trustdomain_test.go checks that the
// generated CRD and ValidateTrustDomain agree on every case.
const (
	TrustDomainPattern   = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`
	MaxTrustDomainLength = 253
)

// ValidateTrustDomain checks that td is a bare host usable both as a SPIFFE
// trust domain and as an X.509 URI name constraint (permitted_uri_domains):
// lowercase DNS labels, no scheme, port, path, wildcard or leading dot. A
// leading dot would mean "subdomains only" to x509 name constraints, and an
// uppercase letter is not a valid SPIFFE trust domain.
func ValidateTrustDomain(td string) error {
	bad := func(why string) error {
		return fmt.Errorf("invalid trust domain %q: %s; want a bare host such as east.mesh", td, why)
	}
	switch {
	case td == "":
		return bad("empty")
	case strings.Contains(td, "://"):
		return bad("has a scheme")
	case strings.ContainsAny(td, "/"):
		return bad("has a path")
	case strings.Contains(td, ":"):
		return bad("has a port")
	case strings.Contains(td, "*"):
		return bad("has a wildcard")
	case strings.ContainsAny(td, ", \t\n"):
		return bad("names more than one domain or has spaces")
	case strings.HasPrefix(td, "."), strings.HasSuffix(td, "."):
		return bad("starts or ends with a dot")
	case len(td) > MaxTrustDomainLength:
		return bad(fmt.Sprintf("longer than %d characters", MaxTrustDomainLength))
	}
	for _, label := range strings.Split(td, ".") {
		if err := checkLabel(label); err != nil {
			return bad(err.Error())
		}
	}
	return nil
}

// ValidateClusterName checks that name is a DNS label, since it becomes part
// of a Vault mount path, a policy name and a role name.
func ValidateClusterName(name string) error {
	if err := checkLabel(name); err != nil {
		return fmt.Errorf("invalid cluster name %q: %w", name, err)
	}
	if len(name) > 40 {
		return fmt.Errorf("invalid cluster name %q: longer than 40 characters", name)
	}
	return nil
}

func checkLabel(l string) error {
	if l == "" {
		return fmt.Errorf("has an empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q is longer than 63 characters", l)
	}
	for i, r := range l {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i != 0 && i != len(l)-1:
		case r >= 'A' && r <= 'Z':
			return fmt.Errorf("label %q has an uppercase letter", l)
		default:
			return fmt.Errorf("label %q has the character %q", l, r)
		}
	}
	return nil
}

// Covers reports whether an intermediate whose URI name constraint is
// constraint may sign identities of trust domain td. crypto/x509 applies a
// URI constraint the way it applies a DNS one: a bare host matches itself
// and every name under it, so "mesh" covers "east.mesh" as well as "mesh".
// Like crypto/x509, it ignores case.
func Covers(constraint, td string) bool {
	constraint, td = strings.ToLower(constraint), strings.ToLower(td)
	return td == constraint || strings.HasSuffix(td, "."+constraint)
}

// Overlap says how trust domain td relates to other, another cluster's:
// "equals", "contains" (other falls under td) or "falls under" (td falls
// under other); "" when neither intermediate could sign the other's
// identities. Two clusters whose trust domains overlap are not isolated,
// so enrol refuses the second and status reports the pair.
func Overlap(td, other string) string {
	switch {
	case strings.EqualFold(td, other):
		return "equals"
	case Covers(td, other):
		return "contains"
	case Covers(other, td):
		return "falls under"
	}
	return ""
}
