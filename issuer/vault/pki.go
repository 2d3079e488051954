package vault

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
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

// signOp is the metrics operation name of a sign request.
func signOp(r vaultcontract.SignRequest) string {
	if r.CA {
		return "sign-intermediate"
	}
	return "sign"
}

// SignResponse is Vault's answer to a sign call, decoded.
type SignResponse struct {
	// Certificate is the issued certificate.
	Certificate *x509.Certificate
	// CAChain is Vault's ca_chain: the issuer and its parents, as known.
	CAChain []*x509.Certificate
}

// Sign sends req to Vault.
func (c *Client) Sign(ctx context.Context, req vaultcontract.SignRequest) (*SignResponse, error) {
	path, op := req.Path(), signOp(req)
	var resp *SignResponse
	err := c.do(ctx, func() error {
		secret, err := c.api.Logical().WriteWithContext(withOp(ctx, op), path, req.Body())
		if err != nil {
			return wrapError(op, path, err)
		}
		if secret == nil || secret.Data == nil {
			return &Error{Op: op, Path: path, StatusCode: http.StatusOK, Messages: []string{"the response carries no data"}}
		}
		resp, err = decodeSignData(secret.Data)
		if err != nil {
			return fmt.Errorf("vault %s (%s): decoding response: %w", op, path, err)
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
// of the issuer's trust anchors.
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
	c.rootsMu.Lock()
	delete(c.roots, anchorsKey(mount, issuerRef))
	c.rootsMu.Unlock()
	_, err = c.TrustAnchors(ctx, mount, issuerRef)
	return err
}

// readIssuer reads the issuer's certificate and the chain Vault knows for
// it (vaultcontract.IssuerJSONPath).
func (c *Client) readIssuer(ctx context.Context, mount, ref string) (*x509.Certificate, []*x509.Certificate, error) {
	path := vaultcontract.IssuerJSONPath(strings.Trim(mount, "/"), ref)
	var cert *x509.Certificate
	var chain []*x509.Certificate
	err := c.do(ctx, func() error {
		secret, err := c.api.Logical().ReadWithContext(withOp(ctx, "read-issuer"), path)
		if err != nil {
			return wrapError("read-issuer", path, err)
		}
		if secret == nil || secret.Data == nil {
			return &Error{Op: "read-issuer", Path: path, StatusCode: http.StatusNotFound, Messages: []string{fmt.Sprintf("PKI issuer %q not found in mount %q", orDefault(ref), mount)}}
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

func orDefault(ref string) string {
	if ref == "" {
		return "default"
	}
	return ref
}

func anchorsKey(mount, ref string) string { return strings.Trim(mount, "/") + "\x00" + orDefault(ref) }

// TrustAnchors returns the roots a certificate signed by the issuer ref of
// mount ("" for the default issuer) must be trusted under: the live
// self-signed certificates of that issuer and its ca_chain, which
// `meshtrust vault bootstrap` sets to every root it made
// (vaultcontract.AnchorChain). During a root rotation that is the old and
// the new root. Any other self-signed issuer of the mount, such as an
// unrelated certificate someone imported, is not one. Results are cached
// for RootsTTL.
func (c *Client) TrustAnchors(ctx context.Context, mount, ref string) ([]*x509.Certificate, error) {
	now := c.clock.Now()
	key := anchorsKey(mount, ref)
	c.rootsMu.Lock()
	cached, ok := c.roots[key]
	c.rootsMu.Unlock()
	if ok && now.Before(cached.expires) {
		return cached.certs, nil
	}
	cert, chain, err := c.readIssuer(ctx, mount, ref)
	if err != nil {
		return nil, err
	}
	roots := vaultcontract.TrustAnchors(cert, chain, now)
	c.rootsMu.Lock()
	c.roots[key] = cachedRoots{certs: roots, expires: now.Add(c.rootsTTL)}
	c.rootsMu.Unlock()
	return roots, nil
}
