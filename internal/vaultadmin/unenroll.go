package vaultadmin

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// UnenrollOptions says what to remove for one cluster.
type UnenrollOptions struct {
	// Cluster is the cluster name given to enroll; a mount is disabled only
	// if it carries vaultcontract.AuthMountDescription(Cluster).
	Cluster string
	// Auth is the auth method given to enroll; a mount of another type is
	// refused.
	Auth AuthKind
	// PolicyName is the policy to delete.
	PolicyName string
	// AuthMount is the auth mount path without "auth/".
	AuthMount string
	// Role is the role to delete in AuthMount.
	Role string
	// DisableAuthMount also disables AuthMount, which revokes every token it
	// issued. Right for a per-cluster kubernetes mount, wrong for a shared
	// AppRole mount: Unenroll refuses any mount enroll did not create for
	// Cluster.
	DisableAuthMount bool
	// Revoke also revokes the cluster's unexpired intermediates, so that they
	// appear on the CRL.
	Revoke bool
	// Mount is the PKI mount, for Revoke.
	Mount string
	// TrustDomain and CommonName select the cluster's intermediates for
	// Revoke: a CA certificate whose only permitted URI domain is TrustDomain
	// and whose CN is CommonName. An empty TrustDomain is read from the
	// cluster's policy. It also names the cluster's CRL exchange entry,
	// which unenrol deletes.
	TrustDomain, CommonName string
	// Now is the current time, to skip expired certificates.
	Now time.Time
}

// Default fills every name left empty with the one enrol gives it; only a
// kubernetes mount, the cluster's own, is ever disabled.
func (o *UnenrollOptions) Default() {
	defaultNames(o.Cluster, o.Auth, &o.Mount, &o.CommonName, &o.PolicyName, &o.Role, &o.AuthMount)
	o.DisableAuthMount = o.DisableAuthMount && o.Auth == AuthKubernetes
}

// Validate checks the options before anything is sent to Vault.
func (o UnenrollOptions) Validate() error {
	if err := vaultcontract.ValidateClusterName(o.Cluster); err != nil {
		return err
	}
	switch o.Auth {
	case AuthKubernetes, AuthAppRole:
	default:
		return fmt.Errorf("invalid --auth %q: want kubernetes or approle", o.Auth)
	}
	if o.TrustDomain != "" {
		if err := vaultcontract.ValidateTrustDomain(o.TrustDomain); err != nil {
			return fmt.Errorf("invalid --trust-domain: %w", err)
		}
	}
	return nil
}

// UnenrollResult is what Unenroll did.
type UnenrollResult struct {
	Result
	// Revoked lists the serial numbers revoked.
	Revoked []string `json:"revoked,omitempty"`
}

// UnenrollPlan is what Unenroll will do.
type UnenrollPlan struct {
	Plan
	// Revoke lists the serial numbers the apply will revoke.
	Revoke []string `json:"revoke,omitempty"`
}

// Unenroll plans and applies in one go.
func Unenroll(ctx context.Context, c *Client, o UnenrollOptions) (*UnenrollResult, error) {
	return planThenApply(PlanUnenroll(ctx, c, o))(ctx)
}

// Apply carries the plan out.
func (p *UnenrollPlan) Apply(ctx context.Context) (*UnenrollResult, error) {
	steps, err := p.apply(ctx)
	res := &UnenrollResult{Result: resultOf(steps)}
	if err != nil {
		return res, err
	}
	res.Revoked = p.Revoke
	return res, nil
}

// PlanUnenroll plans to delete the cluster's role and policy, and
// optionally its auth mount and intermediates. Like enroll, a second run
// changes nothing. It refuses, before planning any write, a mount enrol did
// not make for the cluster. It changes nothing.
func PlanUnenroll(ctx context.Context, c *Client, o UnenrollOptions) (*UnenrollPlan, error) {
	o.Default()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	p := &UnenrollPlan{Plan: Plan{Operation: "unenroll"}}
	auths, err := c.API.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, wrap(c.Addr, "listing auth methods", err)
	}
	m, mounted := auths[o.AuthMount+"/"]
	// Checked before anything is planned, so that a refused unenroll
	// changes nothing.
	if mounted {
		if err := o.checkMount(c.Addr, m); err != nil {
			return nil, err
		}
	}
	rolePath := "auth/" + o.AuthMount + "/role/" + o.Role
	switch {
	case !mounted:
		p.check(rolePath, SystemVault, "auth mount absent")
	default:
		s, err := c.read(ctx, "reading "+rolePath, rolePath)
		if err != nil && !IsStatus(err, 404) {
			return nil, err
		}
		if s == nil {
			p.check(rolePath, SystemVault, "already absent")
		} else {
			p.change(Step{Name: rolePath, System: SystemVault, Detail: "deleted", Before: "role bound to policies " + norm(s.Data["token_policies"]), After: Absent},
				func(ctx context.Context, _ *Step) error { return c.delete(ctx, "deleting "+rolePath, rolePath) })
		}
		if o.DisableAuthMount {
			p.change(Step{Name: "auth mount " + o.AuthMount + "/", System: SystemVault, Detail: "disabled; every token it issued is revoked",
				Before: fmt.Sprintf("%s auth, description %q", m.Type, m.Description), After: Absent},
				func(ctx context.Context, _ *Step) error {
					return wrap(c.Addr, "disabling auth/"+o.AuthMount, c.API.Sys().DisableAuthWithContext(ctx, o.AuthMount))
				})
		}
	}
	current, err := c.API.Sys().GetPolicyWithContext(ctx, o.PolicyName)
	if err != nil && !IsStatus(err, 404) {
		return nil, wrap(c.Addr, "reading policy "+o.PolicyName, err)
	}
	td := o.TrustDomain
	if td == "" {
		td = PinnedTrustDomain(current)
	}
	if o.Revoke && td == "" {
		return nil, fmt.Errorf("vault at %s: --revoke needs the cluster's trust domain, and policy %s, which would name it, is gone: pass --trust-domain", c.Addr, o.PolicyName)
	}
	if current == "" {
		p.check("policy "+o.PolicyName, SystemVault, "already absent")
	} else {
		p.change(Step{Name: "policy " + o.PolicyName, System: SystemVault, Detail: "deleted", Before: policySummary(current), After: Absent},
			func(ctx context.Context, _ *Step) error {
				return wrap(c.Addr, "deleting policy "+o.PolicyName, c.API.Sys().DeletePolicyWithContext(ctx, o.PolicyName))
			})
	}
	if o.Revoke {
		rp, err := PlanRevoke(ctx, c, RevokeOptions{Mount: o.Mount, TrustDomain: td, CommonName: o.CommonName, Now: o.Now})
		if err != nil {
			return nil, err
		}
		for _, s := range rp.Steps {
			p.add(s)
		}
		p.Revoke = rp.Revoke
	}
	if td == "" {
		p.check("CRL exchange entry", SystemVault, "trust domain unknown (policy gone, no --trust-domain): entry left as it is")
	} else if err := planCRLEntryRemoval(ctx, &p.Plan, c, td); err != nil {
		return nil, err
	}
	return p, nil
}

// checkMount refuses a mount of another type than the cluster was enrolled
// with and, when it is to be disabled, one enroll did not create for the
// cluster: disabling a shared mount deletes every other cluster's role and
// revokes their tokens.
func (o UnenrollOptions) checkMount(addr string, m *vaultapi.MountOutput) error {
	why := authMountProblem(m, o.Auth, o.Cluster, o.DisableAuthMount)
	if why == "" {
		return nil
	}
	action := "delete a role in"
	if o.DisableAuthMount {
		action = "disable"
	}
	hint := "pass --keep-auth-mount to delete only the role"
	if m.Type != string(o.Auth) {
		hint = "pass the --auth the cluster was enrolled with (--auth approle deletes only the role)"
	}
	return &NotOwnedError{Addr: addr, Mount: o.AuthMount, Action: action, Reason: why + "; " + hint}
}

// BelongsTo reports whether cert is an intermediate signed for trustDomain
// with the given common name: what enroll's policy lets a cluster obtain.
func BelongsTo(cert *x509.Certificate, trustDomain, commonName string) bool {
	return cert.IsCA && !pki.IsSelfSigned(cert) &&
		slices.Equal(cert.PermittedURIDomains, []string{trustDomain}) &&
		(commonName == "" || cert.Subject.CommonName == commonName)
}
