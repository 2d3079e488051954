package vaultcontract

import (
	"strconv"
	"strings"
	"time"
)

// Parameters of Vault's sign-intermediate and sign/<role> endpoints that
// meshtrust sends or that enrol's policy names.
const (
	ParamCSR                 = "csr"
	ParamCommonName          = "common_name"
	ParamFormat              = "format"
	ParamExcludeCNFromSANs   = "exclude_cn_from_sans"
	ParamAltNames            = "alt_names"
	ParamIPSANs              = "ip_sans"
	ParamURISANs             = "uri_sans"
	ParamTTL                 = "ttl"
	ParamUseCSRValues        = "use_csr_values"
	ParamMaxPathLength       = "max_path_length"
	ParamPermittedURIDomains = "permitted_uri_domains"
)

// FormatPEM is the certificate format the issuer asks for.
const FormatPEM = "pem"

// DefaultMount is the PKI mount when none is named.
const DefaultMount = "pki"

// SignRequest is one call to Vault's PKI engine: sign-intermediate when CA
// is set, sign/<role> otherwise.
type SignRequest struct {
	// Mount is the PKI mount path, e.g. "pki".
	Mount string
	// IssuerRef names the Vault issuer; empty means the mount's default.
	IssuerRef string
	// Role is the PKI role for leaf requests.
	Role string
	// CA selects sign-intermediate.
	CA bool
	// CSR is the PEM-encoded certificate request.
	CSR []byte
	// CommonName is copied from the CSR; Vault takes names from the request
	// parameters, not from the CSR.
	CommonName string
	// AltNames are DNS names and email addresses.
	AltNames []string
	// IPSANs are IP addresses.
	IPSANs []string
	// URISANs are URIs, e.g. SPIFFE IDs.
	URISANs []string
	// TTL is the requested lifetime; zero lets Vault choose.
	TTL time.Duration
	// MaxPathLength is stamped on intermediates (CA only).
	MaxPathLength int
	// PermittedURIDomains is the URI name constraint stamped on
	// intermediates (CA only); Vault >= 1.19 supports it.
	PermittedURIDomains []string
}

// Path is the Vault API path the request goes to.
func (r SignRequest) Path() string {
	mount := strings.Trim(r.Mount, "/")
	switch {
	case r.CA && r.IssuerRef != "":
		return mount + "/issuer/" + r.IssuerRef + "/sign-intermediate"
	case r.CA:
		return mount + "/root/sign-intermediate"
	case r.IssuerRef != "":
		return mount + "/issuer/" + r.IssuerRef + "/sign/" + r.Role
	default:
		return mount + "/sign/" + r.Role
	}
}

// Body is the request's JSON body.
func (r SignRequest) Body() map[string]any {
	b := map[string]any{
		ParamCSR:        string(r.CSR),
		ParamCommonName: r.CommonName,
		ParamFormat:     FormatPEM,
		// The CN of a CA or workload is a label, not a host name; adding it
		// to the SANs would widen the certificate beyond what was asked.
		ParamExcludeCNFromSANs: true,
	}
	if len(r.AltNames) > 0 {
		b[ParamAltNames] = strings.Join(r.AltNames, ",")
	}
	if len(r.IPSANs) > 0 {
		b[ParamIPSANs] = strings.Join(r.IPSANs, ",")
	}
	if len(r.URISANs) > 0 {
		b[ParamURISANs] = strings.Join(r.URISANs, ",")
	}
	if r.TTL > 0 {
		b[ParamTTL] = strconv.FormatInt(int64(r.TTL/time.Second), 10) + "s"
	}
	if r.CA {
		// Never copy extensions from the CSR into a CA certificate: only
		// the constraints stamped here may shape it.
		b[ParamUseCSRValues] = false
		b[ParamMaxPathLength] = MaxPathLength(r.MaxPathLength)
		if len(r.PermittedURIDomains) > 0 {
			b[ParamPermittedURIDomains] = r.PermittedURIDomains
		}
	}
	return b
}

// MaxPathLength is max_path_length as both halves spell it: a string, not a
// number. Vault's ACL compares a request value with a policy value by type
// (a JSON number arrives as json.Number, never equal to anything a policy
// holds), so a number would be denied by every policy that pins it.
func MaxPathLength(n int) string { return strconv.Itoa(n) }
