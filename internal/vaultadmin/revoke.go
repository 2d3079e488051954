package vaultadmin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// RevokeOptions selects a cluster's intermediates to revoke.
type RevokeOptions struct {
	// Mount is the PKI mount.
	Mount string
	// TrustDomain and CommonName select the cluster's intermediates: a CA
	// certificate whose only permitted URI domain is TrustDomain and whose
	// CN is CommonName (BelongsTo).
	TrustDomain, CommonName string
	// Now is the current time, to skip expired certificates.
	Now time.Time
}

// RevokePlan is what revoking will do.
type RevokePlan struct {
	Plan
	// Revoke lists the serial numbers the apply will revoke.
	Revoke []string `json:"revoke,omitempty"`
}

// PlanRevoke finds the cluster's unexpired, unrevoked intermediates in the
// mount and plans to revoke each, so that they appear on the CRL. It
// changes nothing.
func PlanRevoke(ctx context.Context, c *Client, o RevokeOptions) (*RevokePlan, error) {
	if err := vaultcontract.ValidateTrustDomain(o.TrustDomain); err != nil {
		return nil, err
	}
	p := &RevokePlan{Plan: Plan{Operation: "revoke"}}
	serials, err := c.list(ctx, "listing certificates in "+o.Mount+"/", o.Mount+"/certs")
	if err != nil {
		return nil, err
	}
	skipped := 0
	for _, serial := range serials {
		s, err := c.read(ctx, "reading certificate "+serial, o.Mount+"/cert/"+serial)
		if err != nil {
			return nil, err
		}
		if s == nil || s.Data == nil {
			continue
		}
		if rt := norm(s.Data["revocation_time"]); rt != "" && rt != "0" {
			continue
		}
		pemText, _ := s.Data["certificate"].(string)
		certs, err := pki.DecodeCertificates([]byte(pemText), pki.MaxChainPEMSize)
		if err != nil || !BelongsTo(certs[0], o.TrustDomain, o.CommonName) {
			continue
		}
		if o.Now.After(certs[0].NotAfter) {
			skipped++
			continue
		}
		p.Revoke = append(p.Revoke, serial)
	}
	name := "intermediates of " + o.TrustDomain
	detail := fmt.Sprintf("%d revoked (now on the CRL), %d already expired", len(p.Revoke), skipped)
	if len(p.Revoke) == 0 {
		p.check(name, SystemVault, "%s", detail)
		return p, nil
	}
	serialsText := strings.Join(p.Revoke, " ")
	p.change(Step{Name: name, System: SystemVault, Detail: detail, Before: "valid: " + serialsText, After: "revoked: " + serialsText},
		func(ctx context.Context, _ *Step) error {
			for _, serial := range p.Revoke {
				if _, err := c.write(ctx, "revoking certificate "+serial, o.Mount+"/revoke", map[string]any{"serial_number": serial}); err != nil {
					return err
				}
			}
			return nil
		})
	return p, nil
}
