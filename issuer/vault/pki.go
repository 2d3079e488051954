package vault

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// maxResponsePEMSize caps every PEM value read from Vault. It is larger than
// internal/pki's chain cap because a mount's ca_chain may list many issuers;
// a certificate chain is a few kilobytes, so anything near this is broken or
// hostile.
const maxResponsePEMSize = 1 << 20

// decodePEM decodes the certificates of a Vault response field, which may
// hold none (an absent ca_chain).
func decodePEM(b []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	return pki.DecodeCertificates(b, maxResponsePEMSize)
}

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

// Op is the metrics operation name of the request.
func (r SignRequest) Op() string {
	if r.CA {
		return "sign-intermediate"
	}
	return "sign"
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
		"csr":         string(r.CSR),
		"common_name": r.CommonName,
		"format":      "pem",
		// The CN of a CA or workload is a label, not a host name; adding it
		// to the SANs would widen the certificate beyond what was asked.
		"exclude_cn_from_sans": true,
	}
	if len(r.AltNames) > 0 {
		b["alt_names"] = strings.Join(r.AltNames, ",")
	}
	if len(r.IPSANs) > 0 {
		b["ip_sans"] = strings.Join(r.IPSANs, ",")
	}
	if len(r.URISANs) > 0 {
		b["uri_sans"] = strings.Join(r.URISANs, ",")
	}
	if r.TTL > 0 {
		b["ttl"] = strconv.FormatInt(int64(r.TTL/time.Second), 10) + "s"
	}
	if r.CA {
		// Never copy extensions from the CSR into a CA certificate: only
		// the constraints stamped here may shape it.
		b["use_csr_values"] = false
		// A string, not a number: Vault matches policy parameter values by
		// type, and enrol's policy pins max_path_length to "0". A number
		// would be denied by every policy that pins it.
		b["max_path_length"] = strconv.Itoa(r.MaxPathLength)
		if len(r.PermittedURIDomains) > 0 {
			b["permitted_uri_domains"] = r.PermittedURIDomains
		}
	}
	return b
}

// SignResponse is Vault's answer to a sign call, decoded.
type SignResponse struct {
	// Certificate is the issued certificate.
	Certificate *x509.Certificate
	// CAChain is Vault's ca_chain: the issuer and its parents, as known.
	CAChain []*x509.Certificate
}

// Sign sends req to Vault.
func (c *Client) Sign(ctx context.Context, req SignRequest) (*SignResponse, error) {
	path := req.Path()
	var resp *SignResponse
	err := c.do(ctx, func() error {
		secret, err := c.api.Logical().WriteWithContext(withOp(ctx, req.Op()), path, req.Body())
		if err != nil {
			return wrapError(req.Op(), path, err)
		}
		if secret == nil || secret.Data == nil {
			return &Error{Op: req.Op(), Path: path, StatusCode: http.StatusOK, Messages: []string{"the response carries no data"}}
		}
		resp, err = decodeSignData(secret.Data)
		if err != nil {
			return fmt.Errorf("vault %s (%s): decoding response: %w", req.Op(), path, err)
		}
		return nil
	})
	return resp, err
}

func decodeSignData(data map[string]any) (*SignResponse, error) {
	certPEM, _ := data["certificate"].(string)
	certs, err := decodePEM([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("field certificate: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("field certificate holds no certificate")
	}
	resp := &SignResponse{Certificate: certs[0], CAChain: certs[1:]}
	chain, err := pemList(data["ca_chain"])
	if err != nil {
		return nil, fmt.Errorf("field ca_chain: %w", err)
	}
	if len(chain) == 0 {
		// Older Vaults omit ca_chain for root-signed certificates.
		if s, ok := data["issuing_ca"].(string); ok {
			chain = []byte(s)
		}
	}
	rest, err := decodePEM(chain)
	if err != nil {
		return nil, fmt.Errorf("field ca_chain: %w", err)
	}
	resp.CAChain = append(resp.CAChain, rest...)
	return resp, nil
}

func pemList(v any) ([]byte, error) {
	var buf bytes.Buffer
	switch list := v.(type) {
	case nil:
	case string:
		buf.WriteString(list)
	case []any:
		for i, item := range list {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("item %d is %T, not a string", i, item)
			}
			buf.WriteString(s)
			buf.WriteByte('\n')
		}
	default:
		return nil, fmt.Errorf("unexpected type %T", v)
	}
	return buf.Bytes(), nil
}

// Check confirms that Vault is unsealed and answering, that login works, and
// that the PKI issuer's certificate can be read. It also refreshes the cache
// of the mount's live roots.
func (c *Client) Check(ctx context.Context, mount, issuerRef string) error {
	health, err := c.api.Sys().HealthWithContext(withOp(ctx, "health"))
	if err != nil {
		return wrapError("health", "sys/health", err)
	}
	switch {
	case !health.Initialized:
		return &Error{Op: "health", Path: "sys/health", StatusCode: http.StatusNotImplemented, Messages: []string{"Vault is not initialized"}}
	case health.Sealed:
		return &Error{Op: "health", Path: "sys/health", StatusCode: http.StatusServiceUnavailable, Messages: []string{"Vault is sealed"}}
	}
	if _, err := c.ensureToken(ctx); err != nil {
		return err
	}
	ref := issuerRef
	if ref == "" {
		ref = "default"
	}
	if _, _, err := c.readIssuer(ctx, mount, ref); err != nil {
		return err
	}
	c.rootsMu.Lock()
	delete(c.roots, mount)
	c.rootsMu.Unlock()
	_, err = c.Roots(ctx, mount)
	return err
}

// readIssuer reads <mount>/issuer/<ref>/json: the issuer's certificate and
// the chain Vault knows for it.
func (c *Client) readIssuer(ctx context.Context, mount, ref string) (*x509.Certificate, []*x509.Certificate, error) {
	path := strings.Trim(mount, "/") + "/issuer/" + ref + "/json"
	var cert *x509.Certificate
	var chain []*x509.Certificate
	err := c.do(ctx, func() error {
		secret, err := c.api.Logical().ReadWithContext(withOp(ctx, "read-issuer"), path)
		if err != nil {
			return wrapError("read-issuer", path, err)
		}
		if secret == nil || secret.Data == nil {
			return &Error{Op: "read-issuer", Path: path, StatusCode: http.StatusNotFound, Messages: []string{fmt.Sprintf("PKI issuer %q not found in mount %q", ref, mount)}}
		}
		certPEM, _ := secret.Data["certificate"].(string)
		certs, err := decodePEM([]byte(certPEM))
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("vault read-issuer (%s): field certificate holds no certificate: %v", path, err)
		}
		cert = certs[0]
		chainPEM, err := pemList(secret.Data["ca_chain"])
		if err != nil {
			return fmt.Errorf("vault read-issuer (%s): field ca_chain: %w", path, err)
		}
		if chain, err = decodePEM(chainPEM); err != nil {
			return fmt.Errorf("vault read-issuer (%s): field ca_chain: %w", path, err)
		}
		return nil
	})
	return cert, chain, err
}

// Roots returns every live self-signed certificate the mount knows: its
// root issuers and the roots at the top of its issuers' chains. During a
// root rotation that is the old and the new root. Results are cached for
// RootsTTL.
func (c *Client) Roots(ctx context.Context, mount string) ([]*x509.Certificate, error) {
	now := c.clock.Now()
	c.rootsMu.Lock()
	cached, ok := c.roots[mount]
	c.rootsMu.Unlock()
	if ok && now.Before(cached.expires) {
		return cached.certs, nil
	}
	path := strings.Trim(mount, "/") + "/issuers"
	var ids []string
	err := c.do(ctx, func() error {
		secret, err := c.api.Logical().ListWithContext(withOp(ctx, "list-issuers"), path)
		if err != nil {
			return wrapError("list-issuers", path, err)
		}
		ids = nil
		if secret != nil && secret.Data != nil {
			keys, _ := secret.Data["keys"].([]any)
			for _, k := range keys {
				if s, ok := k.(string); ok {
					ids = append(ids, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var found []*x509.Certificate
	for _, id := range ids {
		cert, chain, err := c.readIssuer(ctx, mount, id)
		if err != nil {
			return nil, err
		}
		found = append(found, cert)
		found = append(found, chain...)
	}
	roots := pki.LiveRoots(found, now)
	c.rootsMu.Lock()
	c.roots[mount] = cachedRoots{certs: roots, expires: now.Add(c.rootsTTL)}
	c.rootsMu.Unlock()
	return roots, nil
}
