package vaultcontract

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// This file says what an enrolled cluster may sign. Policy is what
// `meshtrust vault enroll` writes to Vault for one cluster; SignRequest
// (sign.go) is what the issuer sends under it. contract_test.go checks that
// the one lets the other through, and nothing else.

// Policy describes what one enrolled cluster may do in Vault.
type Policy struct {
	// Cluster is the cluster's name, for the policy's comment.
	Cluster string
	// Mount is the PKI mount path, e.g. "pki".
	Mount string
	// IssuerRef is the issuer that signs; empty means <mount>/root/sign-intermediate
	// (the mount's default issuer) instead of <mount>/issuer/<ref>/sign-intermediate.
	IssuerRef string
	// TrustDomain is the only value permitted_uri_domains may take.
	TrustDomain string
	// CommonName is the only common name (a Vault glob) the cluster may request.
	CommonName string
}

// SignPath is the path the cluster may update to sign its intermediate: the
// one the issuer's SignRequest goes to.
func (p Policy) SignPath() string {
	return SignRequest{Mount: p.Mount, IssuerRef: p.IssuerRef, CA: true}.Path()
}

// IssuerPaths are the paths the cluster may read for its health check.
func (p Policy) IssuerPaths() []string {
	ref := p.IssuerRef
	if ref == "" {
		ref = "default"
	}
	base := p.Mount + "/issuer/" + ref
	return []string{base, base + "/json", base + "/pem"}
}

// pinnedParameters are the parameters a signing request must carry, in a
// fixed order.
var pinnedParameters = []string{ParamCommonName, ParamMaxPathLength, ParamPermittedURIDomains}

// Pinned are the pinned parameters with the only value each may take, as
// the issuer sends them: max_path_length as the string "0".
func (p Policy) Pinned() map[string]string {
	return map[string]string{
		ParamCommonName:          p.CommonName,
		ParamPermittedURIDomains: p.TrustDomain,
		ParamMaxPathLength:       MaxPathLength(0),
	}
}

// freeParameters may take any value. Everything not listed here, in
// pinnedParameters or in HCL's fixed list is refused by Vault, which is
// what keeps out permitted_dns_domains, excluded_*, alt_names, not_after and
// issuer_ref. ttl is free because the mount's max lease TTL caps it anyway.
var freeParameters = []string{ParamCSR, ParamTTL, ParamExcludeCNFromSANs}

// HCL returns the text of the cluster's Vault ACL policy.
//
// required_parameters makes Vault refuse a request that leaves a pinned
// parameter out, and allowed_parameters refuses any other value, including
// a list or comma string that names a second domain. denied_parameters adds
// the empty string and the empty list: Vault checks a list element by
// element, so an empty list (or an empty comma string) passes
// allowed_parameters, and permitted_uri_domains=[] would otherwise yield an
// intermediate with no name constraint at all.
func (p Policy) HCL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by meshtrust. Cluster %s may sign intermediate CAs only for\n", strconv.Quote(p.Cluster))
	fmt.Fprintf(&b, "# trust domain %s, with max_path_length 0.\n", strconv.Quote(p.TrustDomain))
	fmt.Fprintf(&b, "path %s {\n", strconv.Quote(p.SignPath()))
	b.WriteString("  capabilities = [\"update\"]\n")
	fmt.Fprintf(&b, "  required_parameters = [%s]\n", quoteAll(pinnedParameters))
	b.WriteString("  allowed_parameters = {\n")
	pinned := p.Pinned()
	for _, k := range pinnedParameters {
		fmt.Fprintf(&b, "    %s = [%s]\n", strconv.Quote(k), strconv.Quote(pinned[k]))
	}
	for _, k := range freeParameters {
		fmt.Fprintf(&b, "    %s = []\n", strconv.Quote(k))
	}
	fmt.Fprintf(&b, "    %s = [%s, %s]\n", strconv.Quote(ParamFormat), strconv.Quote(FormatPEM), strconv.Quote("pem_bundle"))
	// Only false: with true Vault would copy the CSR's own extensions,
	// name constraints included, into the CA certificate.
	fmt.Fprintf(&b, "    %s = [false]\n", strconv.Quote(ParamUseCSRValues))
	// The intermediate's own URI SAN, as the Certificate asks for it.
	fmt.Fprintf(&b, "    %s = [%s]\n", strconv.Quote(ParamURISANs), strconv.Quote(TrustDomainURI(p.TrustDomain)))
	b.WriteString("  }\n")
	b.WriteString("  denied_parameters = {\n")
	for _, k := range pinnedParameters {
		fmt.Fprintf(&b, "    %s = [\"\", []]\n", strconv.Quote(k))
	}
	b.WriteString("  }\n")
	b.WriteString("}\n")
	for _, path := range p.IssuerPaths() {
		fmt.Fprintf(&b, "\npath %s {\n  capabilities = [\"read\"]\n}\n", strconv.Quote(path))
	}
	b.WriteString(p.crlExchangeHCL())
	return b.String()
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// policyHeader starts the comment HCL writes; ReadPolicies takes the
// cluster's name from it.
var policyHeader = regexp.MustCompile(`(?m)^# Managed by meshtrust\. Cluster ("(?:[^"\\]|\\.)*") may sign`)

// ReadPolicies reads back, from the text of a Vault ACL policy, what it
// lets its holder sign: one Policy per trust domain that a path block
// granting update (or create) on a sign-intermediate path pins in
// permitted_uri_domains. It is how enrol and unenrol learn what is enrolled
// from what enrol wrote to Vault. Cluster comes from the header HCL writes;
// a policy without it (not written by enrol) gives Cluster "". A policy
// that does not parse, or grants no pinned signing, gives nothing.
func ReadPolicies(text string) []Policy {
	blocks, err := PathBlocks(text)
	if err != nil {
		return nil
	}
	cluster := ""
	if m := policyHeader.FindStringSubmatch(text); m != nil {
		cluster, _ = strconv.Unquote(m[1])
	}
	var out []Policy
	for _, b := range blocks {
		mount, ref, ok := parseSignPath(b.Pattern)
		if !ok || b.Err != nil || !b.GrantsWrite() {
			continue
		}
		cn := ""
		if v := b.Allowed[ParamCommonName]; len(v) == 1 {
			cn, _ = v[0].(string)
		}
		for _, v := range b.Allowed[ParamPermittedURIDomains] {
			if td, ok := v.(string); ok && td != "" {
				out = append(out, Policy{Cluster: cluster, Mount: mount, IssuerRef: ref, TrustDomain: td, CommonName: cn})
			}
		}
	}
	return out
}

// parseSignPath splits a sign-intermediate path the way SignPath builds it.
func parseSignPath(path string) (mount, issuerRef string, ok bool) {
	path = strings.TrimPrefix(path, "/")
	if m, found := strings.CutSuffix(path, "/root/sign-intermediate"); found && m != "" {
		return m, "", true
	}
	rest, found := strings.CutSuffix(path, "/sign-intermediate")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/issuer/")
	if i <= 0 {
		return "", "", false
	}
	ref := rest[i+len("/issuer/"):]
	if ref == "" || strings.ContainsAny(ref, "/+*") {
		return "", "", false
	}
	return rest[:i], ref, true
}
