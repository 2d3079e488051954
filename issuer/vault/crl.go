package vault

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// IssuerCRL is one live issuer of a mount with Vault's current CRL of it.
type IssuerCRL struct {
	// ID is Vault's issuer ID.
	ID string
	// Cert is the issuer's certificate.
	Cert *x509.Certificate
	// CRL is the CRL Vault serves for it (<mount>/issuer/<id>/crl/pem).
	CRL *x509.RevocationList
}

// IssuerCRLs reads Vault's CRL of each CA whose CRL a cluster signing
// under the issuer ref of mount carries (vaultcontract.CRLIssuers: its
// trust anchors, and a Vault intermediate it may be), found among the
// mount's issuers by certificate. Any other issuer of the mount, such as a
// stray imported self-signed certificate, is not read. Each CRL is checked
// to be its issuer's; whether it is fresh is the caller's call.
func (c *Client) IssuerCRLs(ctx context.Context, mount, ref string) ([]IssuerCRL, error) {
	cert, chain, err := c.readIssuer(ctx, mount, ref)
	if err != nil {
		return nil, err
	}
	ids, err := c.listIssuers(ctx, mount)
	if err != nil {
		return nil, err
	}
	found, err := vaultcontract.FindIssuers(ctx, ids, vaultcontract.CRLIssuers(cert, chain, c.clock.Now()),
		func(ctx context.Context, id string) (IssuerCRL, *x509.Certificate, error) {
			cert, _, err := c.readIssuer(ctx, mount, id)
			return IssuerCRL{ID: id, Cert: cert}, cert, err
		})
	if err != nil {
		return nil, err
	}
	for i, ic := range found {
		crl, err := c.readCRL(ctx, mount, ic.ID)
		if err != nil {
			return nil, err
		}
		if !pki.CRLIssuedBy(crl, ic.Cert) {
			return nil, fmt.Errorf("vault read-crl (%s/issuer/%s/crl/pem): the CRL is not signed by that issuer", mount, ic.ID)
		}
		found[i].CRL = crl
	}
	return found, nil
}

func (c *Client) readCRL(ctx context.Context, mount, id string) (*x509.RevocationList, error) {
	path := strings.Trim(mount, "/") + "/issuer/" + id + "/crl/pem"
	var crl *x509.RevocationList
	err := c.do(ctx, func() error {
		resp, err := c.api.Logical().ReadRawWithContext(withOp(ctx, "read-crl"), path)
		if err != nil {
			return wrapError("read-crl", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, pki.MaxCRLPEMSize+1))
		if err != nil {
			return fmt.Errorf("vault read-crl (%s): %w", path, err)
		}
		crls, err := pki.DecodeCRLs(body, pki.MaxCRLPEMSize)
		if err != nil {
			return fmt.Errorf("vault read-crl (%s): %w", path, err)
		}
		if len(crls) != 1 {
			return fmt.Errorf("vault read-crl (%s): %d CRLs, want one", path, len(crls))
		}
		crl = crls[0]
		return nil
	})
	return crl, err
}

// CRLEntry is one cluster's entry in the CRL exchange.
type CRLEntry struct {
	// PEM is the cluster's intermediates and their CRLs; empty until its
	// controllers publish.
	PEM string
	// Cluster is the cluster name enrol recorded.
	Cluster string
	// Updated is when the cluster's issuer last wrote it.
	Updated time.Time
}

// CRLEntries reads every entry of the CRL exchange, by trust domain.
func (c *Client) CRLEntries(ctx context.Context) (map[string]CRLEntry, error) {
	keys, err := c.listKeys(ctx, "list-crl-exchange", vaultcontract.CRLExchangeMount+"/", c.doKeepingToken)
	if err != nil {
		return nil, err
	}
	out := make(map[string]CRLEntry, len(keys))
	for _, td := range keys {
		path := vaultcontract.CRLExchangePath(td)
		var e CRLEntry
		err := c.doKeepingToken(ctx, func() error {
			secret, err := c.api.Logical().ReadWithContext(withOp(ctx, "read-crl-exchange"), path)
			if err != nil {
				return wrapError("read-crl-exchange", path, err)
			}
			if secret == nil || secret.Data == nil {
				return nil
			}
			e.PEM, _ = secret.Data[vaultcontract.CRLEntryPEM].(string)
			e.Cluster, _ = secret.Data[vaultcontract.CRLEntryCluster].(string)
			if u, _ := secret.Data[vaultcontract.CRLEntryUpdated].(string); u != "" {
				e.Updated, _ = time.Parse(time.RFC3339, u)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out[td] = e
	}
	return out, nil
}

// PublishCRLEntry writes the cluster's entry: its intermediates and their
// CRLs, keeping the cluster name enrol recorded.
func (c *Client) PublishCRLEntry(ctx context.Context, trustDomain string, e CRLEntry) error {
	if len(e.PEM) > pki.MaxCRLPEMSize {
		return &Error{Op: "write-crl-exchange", Path: vaultcontract.CRLExchangePath(trustDomain), StatusCode: http.StatusRequestEntityTooLarge,
			Messages: []string{fmt.Sprintf("the entry holds %d bytes, over the %d others accept", len(e.PEM), pki.MaxCRLPEMSize)}}
	}
	path := vaultcontract.CRLExchangePath(trustDomain)
	return c.doKeepingToken(ctx, func() error {
		_, err := c.api.Logical().WriteWithContext(withOp(ctx, "write-crl-exchange"), path, map[string]any{
			vaultcontract.CRLEntryPEM:     e.PEM,
			vaultcontract.CRLEntryCluster: e.Cluster,
			vaultcontract.CRLEntryUpdated: e.Updated.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return wrapError("write-crl-exchange", path, err)
		}
		return nil
	})
}

// listIssuers lists the issuer IDs of mount.
func (c *Client) listIssuers(ctx context.Context, mount string) ([]string, error) {
	return c.listKeys(ctx, "list-issuers", strings.Trim(mount, "/")+"/issuers", c.do)
}

// listKeys is a Vault LIST of path, run through do (c.do or
// c.doKeepingToken); folders (keys ending in "/") are left out.
func (c *Client) listKeys(ctx context.Context, op, path string, do func(context.Context, func() error) error) ([]string, error) {
	var keys []string
	err := do(ctx, func() error {
		secret, err := c.api.Logical().ListWithContext(withOp(ctx, op), path)
		if err != nil {
			return wrapError(op, path, err)
		}
		keys = nil
		if secret != nil && secret.Data != nil {
			raw, _ := secret.Data["keys"].([]any)
			for _, k := range raw {
				if s, ok := k.(string); ok && !strings.HasSuffix(s, "/") {
					keys = append(keys, s)
				}
			}
		}
		return nil
	})
	return keys, err
}

// doKeepingToken runs fn with a valid token, and on a 403 returns it
// without logging in again: on the CRL exchange a 403 means a policy from
// before the exchange (the cluster needs `meshtrust vault enroll` again),
// which a new login cannot fix, and a login per refresh would only fill
// Vault's audit log. A dead token shows on the sign and check paths, which
// log in again.
func (c *Client) doKeepingToken(ctx context.Context, fn func() error) error {
	if _, err := c.ensureToken(ctx); err != nil {
		return err
	}
	return fn()
}
