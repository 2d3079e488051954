package decision

import (
	"fmt"
	"slices"
	"strings"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// IssuerRef names the issuers whose Certificates the syncer may install
// as istiod's CA: a kind and group, and optionally one name (a namespaced
// issuer's name is relative to the Certificate's namespace).
type IssuerRef struct {
	Kind, Group string
	// Name is empty for every issuer of the kind.
	Name string
}

func (r IssuerRef) String() string {
	s := r.Kind + "." + r.Group
	if r.Name != "" {
		s += "/" + r.Name
	}
	return s
}

// DefaultAllowedIssuers are meshtrust's own issuers, whose intermediates
// Vault's enrolment policy pins to one trust domain.
func DefaultAllowedIssuers() []IssuerRef {
	return []IssuerRef{
		{Kind: vaultcontract.ClusterIssuerKind, Group: vaultcontract.IssuerGroup},
		{Kind: vaultcontract.IssuerKind, Group: vaultcontract.IssuerGroup},
	}
}

// ParseIssuerRef reads "<Kind>.<group>" or "<Kind>.<group>/<name>", as
// kubectl spells a kind in a group: "VaultClusterIssuer.meshtrust.io",
// "Issuer.cert-manager.io/mesh-ca".
func ParseIssuerRef(s string) (IssuerRef, error) {
	bad := func(why string) (IssuerRef, error) {
		return IssuerRef{}, fmt.Errorf("invalid issuer %q: %s; want <Kind>.<group>[/<name>], e.g. VaultClusterIssuer.meshtrust.io", s, why)
	}
	kindGroup, name, _ := strings.Cut(strings.TrimSpace(s), "/")
	kind, group, ok := strings.Cut(kindGroup, ".")
	switch {
	case !ok || kind == "" || group == "":
		return bad("no kind or no group")
	case kind[0] < 'A' || kind[0] > 'Z':
		return bad("a kind starts with an uppercase letter")
	case strings.Contains(name, "/"):
		return bad("more than one name")
	}
	return IssuerRef{Kind: kind, Group: group, Name: name}, nil
}

// certificateIssuer is a Certificate's issuerRef with cert-manager's
// defaults filled in (kind Issuer, group cert-manager.io).
func certificateIssuer(ref cmmeta.IssuerReference) IssuerRef {
	r := IssuerRef{Kind: ref.Kind, Group: ref.Group, Name: ref.Name}
	if r.Kind == "" {
		r.Kind = "Issuer"
	}
	if r.Group == "" {
		r.Group = "cert-manager.io"
	}
	return r
}

// Allows reports whether a Certificate's issuerRef is one of refs.
func allows(refs []IssuerRef, ref IssuerRef) bool {
	return slices.ContainsFunc(refs, func(a IssuerRef) bool {
		return a.Kind == ref.Kind && a.Group == ref.Group && (a.Name == "" || a.Name == ref.Name)
	})
}

// IssuerAllowed refuses a Certificate whose spec.issuerRef is not among
// the allowed issuers: an opted-in Certificate from a SelfSigned or CA
// issuer would otherwise replace istiod's CA with one no enrolment policy
// constrains.
func IssuerAllowed(in Input) *Refusal {
	ref := certificateIssuer(in.Certificate.Spec.IssuerRef)
	if allows(in.AllowedIssuers, ref) {
		return nil
	}
	names := make([]string, len(in.AllowedIssuers))
	for i, a := range in.AllowedIssuers {
		names[i] = a.String()
	}
	return refusal(ReasonIssuerNotAllowed, "Certificate %s/%s is issued by %s (spec.issuerRef), which is not an allowed issuer (--syncer-allowed-issuers: %s); cacerts is left untouched",
		in.Certificate.Namespace, in.Certificate.Name, ref, strings.Join(names, ", "))
}

// IntermediateNameConstrained refuses a bundle whose CA certificate does
// not carry exactly one URI name constraint, a valid trust domain: without
// it, istiod's CA could sign workload identities of any trust domain.
func IntermediateNameConstrained(in Input) *Refusal {
	c := in.Bundle.Cert
	doms := c.PermittedURIDomains
	why := ""
	switch {
	case len(doms) == 0:
		why = "carries no URI name constraint"
	case len(doms) > 1:
		why = fmt.Sprintf("permits %d URI domains %q, not one trust domain", len(doms), doms)
	default:
		if err := vaultcontract.ValidateTrustDomain(doms[0]); err != nil {
			why = fmt.Sprintf("permits URI domain %q, which is not a trust domain (%v)", doms[0], err)
		}
	}
	if why == "" {
		return nil
	}
	return refusal(ReasonUnconstrained, "Secret %s/%s: the intermediate %q %s, so it could sign workload identities of any trust domain; cacerts is left untouched",
		in.Source.Namespace, in.Source.Name, c.Subject.String(), why)
}

// MeshTrustDomainMatches warns when Istio's meshConfig.trustDomain in the
// target's namespace differs from the intermediate's URI name constraint:
// istiod does not check the constraint when it signs, so it would hand out
// workload certificates that every peer refuses. It is a warning, not a
// refusal: cacerts is right, Istio's configuration is not.
func MeshTrustDomainMatches(in Input) *Warning {
	if in.MeshErr != nil {
		return &Warning{Reason: ReasonMeshUnreadable, Message: fmt.Sprintf("cannot check Istio's trust domain against the intermediate: %v", in.MeshErr)}
	}
	if in.Mesh == nil || in.Bundle == nil || len(in.Bundle.Cert.PermittedURIDomains) != 1 {
		return nil
	}
	if why := in.Mesh.Mismatch(in.Bundle.Cert.PermittedURIDomains[0], "ConfigMap "+in.MeshSource); why != "" {
		return &Warning{Reason: ReasonMeshTrustDomain, Message: why}
	}
	return nil
}
