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
	// Cluster is the cluster's name: its policy gives the trust domain when
	// TrustDomain is empty, and its name the default CommonName.
	Cluster string
	// PolicyName is the cluster's policy; empty means enrol's name.
	PolicyName string
	// Mount is the PKI mount.
	Mount string
	// TrustDomain and CommonName select the cluster's intermediates: a CA
	// certificate whose only permitted URI domain is TrustDomain and whose
	// CN is CommonName (BelongsTo).
	TrustDomain, CommonName string
	// Now is the current time, to skip expired certificates.
	Now time.Time
}

// Default fills the names left empty with enrol's.
func (o *RevokeOptions) Default() {
	if o.Mount == "" {
		o.Mount = vaultcontract.DefaultMount
	}
	if o.Cluster == "" {
		return
	}
	if o.PolicyName == "" {
		o.PolicyName = vaultcontract.PolicyName(o.Cluster)
	}
	if o.CommonName == "" {
		o.CommonName = vaultcontract.IntermediateCommonName(o.Cluster)
	}
}

// RevokePlan is what revoking will do.
type RevokePlan struct {
	Plan
	// TrustDomain is the cluster's, as given or read from its policy.
	TrustDomain string `json:"trustDomain"`
	// Revoke lists the serial numbers the apply will revoke.
	Revoke []string `json:"revoke,omitempty"`
	// AlreadyRevoked lists the cluster's unexpired intermediates revoked
	// before.
	AlreadyRevoked []string `json:"alreadyRevoked,omitempty"`
}

// RevokeResult is what revoking did.
type RevokeResult struct {
	Result
	// TrustDomain is the cluster's.
	TrustDomain string `json:"trustDomain"`
	// Revoked lists the serial numbers revoked now.
	Revoked []string `json:"revoked,omitempty"`
	// AlreadyRevoked lists those revoked before.
	AlreadyRevoked []string `json:"alreadyRevoked,omitempty"`
}

// Revoke plans and applies in one go.
func Revoke(ctx context.Context, c *Client, o RevokeOptions) (*RevokeResult, error) {
	return planThenApply(PlanRevoke(ctx, c, o))(ctx)
}

// Apply carries the plan out.
func (p *RevokePlan) Apply(ctx context.Context) (*RevokeResult, error) {
	steps, err := p.apply(ctx)
	res := &RevokeResult{Result: resultOf(steps), TrustDomain: p.TrustDomain, AlreadyRevoked: p.AlreadyRevoked}
	if err != nil {
		return res, err
	}
	res.Revoked = p.Revoke
	return res, nil
}

// PlanRevoke finds the cluster's unexpired intermediates in the mount and
// plans to revoke those not yet revoked, then to rebuild the mount's CRLs
// unless they already list every one of them (bootstrap turns on Vault's
// auto_rebuild, under which a revocation alone leaves the CRL as it was
// until the next scheduled rebuild). The cluster's enrolment is left alone.
// It changes nothing.
func PlanRevoke(ctx context.Context, c *Client, o RevokeOptions) (*RevokePlan, error) {
	o.Default()
	if o.TrustDomain == "" && o.PolicyName != "" {
		td, err := TrustDomainOf(ctx, c, o.PolicyName)
		if err != nil {
			return nil, err
		}
		if td == "" {
			return nil, fmt.Errorf("vault at %s: policy %s, which would name cluster %s's trust domain, is gone: pass --trust-domain", c.Addr, o.PolicyName, o.Cluster)
		}
		o.TrustDomain = td
	}
	if err := vaultcontract.ValidateTrustDomain(o.TrustDomain); err != nil {
		return nil, err
	}
	p := &RevokePlan{Plan: Plan{Operation: "revoke"}, TrustDomain: o.TrustDomain}
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
		pemText, _ := s.Data["certificate"].(string)
		certs, err := pki.DecodeCertificates([]byte(pemText), pki.MaxChainPEMSize)
		if err != nil || !BelongsTo(certs[0], o.TrustDomain, o.CommonName) {
			continue
		}
		if o.Now.After(certs[0].NotAfter) {
			skipped++
			continue
		}
		if rt := norm(s.Data["revocation_time"]); rt != "" && rt != "0" {
			p.AlreadyRevoked = append(p.AlreadyRevoked, serial)
			continue
		}
		p.Revoke = append(p.Revoke, serial)
	}
	name := "intermediates of " + o.TrustDomain
	detail := fmt.Sprintf("%d revoked (now on the CRL), %d revoked before, %d already expired", len(p.Revoke), len(p.AlreadyRevoked), skipped)
	if len(p.Revoke) == 0 {
		p.check(name, SystemVault, "%s", detail)
	} else {
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
	}
	if err := planCRLRotation(ctx, &p.Plan, c, o.Mount, append(append([]string{}, p.Revoke...), p.AlreadyRevoked...), o.Now); err != nil {
		return nil, err
	}
	return p, nil
}
