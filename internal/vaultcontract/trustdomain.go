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
