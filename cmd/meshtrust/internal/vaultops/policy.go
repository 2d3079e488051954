package vaultops

import (
	"fmt"
	"strconv"
	"strings"
)

// PolicyOptions describes what one enrolled cluster may do in Vault.
type PolicyOptions struct {
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

// SignPath is the path the cluster may update to sign its intermediate.
func (o PolicyOptions) SignPath() string {
	if o.IssuerRef == "" {
		return o.Mount + "/root/sign-intermediate"
	}
	return o.Mount + "/issuer/" + o.IssuerRef + "/sign-intermediate"
}

// IssuerPaths are the paths the cluster may read for its health check.
func (o PolicyOptions) IssuerPaths() []string {
	ref := o.IssuerRef
	if ref == "" {
		ref = "default"
	}
	base := o.Mount + "/issuer/" + ref
	return []string{base, base + "/json", base + "/pem"}
}

// PinnedParameters are the parameters a signing request must carry, with the
// only value each may take. Vault compares request values with these as
// strings (a JSON number never equals a policy value), so max_path_length
// has to be sent as the string "0".
func (o PolicyOptions) PinnedParameters() map[string]string {
	return map[string]string{
		"common_name":           o.CommonName,
		"permitted_uri_domains": o.TrustDomain,
		"max_path_length":       "0",
	}
}

// freeParameters may take any value. Everything not listed here, in
// PinnedParameters or in RenderPolicy's fixed list is refused by Vault,
// which is what keeps out permitted_dns_domains, excluded_*, alt_names,
// not_after and issuer_ref. ttl is free because the mount's max lease TTL
// caps it anyway.
var freeParameters = []string{"csr", "ttl", "exclude_cn_from_sans"}

// RenderPolicy returns the HCL of the cluster's policy.
//
// required_parameters makes Vault refuse a request that leaves a pinned
// parameter out, and allowed_parameters refuses any other value, including
// a list or comma string that names a second domain. denied_parameters adds
// the empty string and the empty list: Vault checks a list element by
// element, so an empty list (or an empty comma string) passes
// allowed_parameters, and permitted_uri_domains=[] would otherwise yield an
// intermediate with no name constraint at all.
func RenderPolicy(o PolicyOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by meshtrust. Cluster %s may sign intermediate CAs only for\n", strconv.Quote(o.Cluster))
	fmt.Fprintf(&b, "# trust domain %s, with max_path_length 0.\n", strconv.Quote(o.TrustDomain))
	fmt.Fprintf(&b, "path %s {\n", strconv.Quote(o.SignPath()))
	b.WriteString("  capabilities = [\"update\"]\n")
	b.WriteString("  required_parameters = [\"common_name\", \"max_path_length\", \"permitted_uri_domains\"]\n")
	b.WriteString("  allowed_parameters = {\n")
	pinned := o.PinnedParameters()
	for _, k := range []string{"common_name", "max_path_length", "permitted_uri_domains"} {
		fmt.Fprintf(&b, "    %s = [%s]\n", strconv.Quote(k), strconv.Quote(pinned[k]))
	}
	for _, k := range freeParameters {
		fmt.Fprintf(&b, "    %s = []\n", strconv.Quote(k))
	}
	b.WriteString("    \"format\" = [\"pem\", \"pem_bundle\"]\n")
	// Only false: with true Vault would copy the CSR's own extensions,
	// name constraints included, into the CA certificate.
	b.WriteString("    \"use_csr_values\" = [false]\n")
	// The intermediate's own URI SAN, as the Certificate asks for it.
	fmt.Fprintf(&b, "    \"uri_sans\" = [%s]\n", strconv.Quote("spiffe://"+o.TrustDomain))
	b.WriteString("  }\n")
	b.WriteString("  denied_parameters = {\n")
	for _, k := range []string{"common_name", "max_path_length", "permitted_uri_domains"} {
		fmt.Fprintf(&b, "    %s = [\"\", []]\n", strconv.Quote(k))
	}
	b.WriteString("  }\n")
	b.WriteString("}\n")
	for _, p := range o.IssuerPaths() {
		fmt.Fprintf(&b, "\npath %s {\n  capabilities = [\"read\"]\n}\n", strconv.Quote(p))
	}
	return b.String()
}
