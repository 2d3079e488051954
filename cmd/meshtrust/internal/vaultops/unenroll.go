package vaultops

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// UnenrollOptions says what to remove for one cluster.
type UnenrollOptions struct {
	// Cluster is the cluster name given to enroll; a mount is disabled only
	// if it carries AuthMountDescription(Cluster).
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
	// and whose CN is CommonName.
	TrustDomain, CommonName string
	// Now is the current time, to skip expired certificates.
	Now time.Time
}

// UnenrollResult is what Unenroll did.
type UnenrollResult struct {
	// Steps lists every check in order.
	Steps []Step `json:"steps"`
	// Changed is true if any step changed something.
	Changed bool `json:"changed"`
	// Revoked lists the serial numbers revoked.
	Revoked []string `json:"revoked,omitempty"`
}

func (r *UnenrollResult) step(name string, changed bool, format string, args ...any) {
	r.Steps = append(r.Steps, Step{Name: name, Changed: changed, Detail: fmt.Sprintf(format, args...)})
	r.Changed = r.Changed || changed
}

// Unenroll deletes the cluster's role and policy, and optionally its auth
// mount and intermediates. Like enroll, a second run changes nothing.
func Unenroll(ctx context.Context, c *Client, o UnenrollOptions) (*UnenrollResult, error) {
	if o.Revoke {
		if err := ValidateTrustDomain(o.TrustDomain); err != nil {
			return nil, fmt.Errorf("--revoke needs the cluster's trust domain: %w", err)
		}
	}
	res := &UnenrollResult{}
	auths, err := c.API.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, wrap(c.Addr, "listing auth methods", err)
	}
	m, mounted := auths[o.AuthMount+"/"]
	// Checked before anything is deleted, so that a refused unenroll
	// changes nothing.
	if mounted {
		if err := o.checkMount(c.Addr, m); err != nil {
			return nil, err
		}
	}
	rolePath := "auth/" + o.AuthMount + "/role/" + o.Role
	switch {
	case !mounted:
		res.step(rolePath, false, "auth mount absent")
	default:
		s, err := c.read(ctx, "reading "+rolePath, rolePath)
		if err != nil && !IsStatus(err, 404) {
			return nil, err
		}
		if s == nil {
			res.step(rolePath, false, "already absent")
		} else {
			if err := c.delete(ctx, "deleting "+rolePath, rolePath); err != nil {
				return nil, err
			}
			res.step(rolePath, true, "deleted")
		}
		if o.DisableAuthMount {
			if err := c.API.Sys().DisableAuthWithContext(ctx, o.AuthMount); err != nil {
				return nil, wrap(c.Addr, "disabling auth/"+o.AuthMount, err)
			}
			res.step("auth mount "+o.AuthMount+"/", true, "disabled; every token it issued is revoked")
		}
	}
	current, err := c.API.Sys().GetPolicyWithContext(ctx, o.PolicyName)
	if err != nil && !IsStatus(err, 404) {
		return nil, wrap(c.Addr, "reading policy "+o.PolicyName, err)
	}
	if current == "" {
		res.step("policy "+o.PolicyName, false, "already absent")
	} else {
		if err := c.API.Sys().DeletePolicyWithContext(ctx, o.PolicyName); err != nil {
			return nil, wrap(c.Addr, "deleting policy "+o.PolicyName, err)
		}
		res.step("policy "+o.PolicyName, true, "deleted")
	}
	if o.Revoke {
		if err := revokeIntermediates(ctx, c, o, res); err != nil {
			return res, err
		}
	}
	return res, nil
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

func revokeIntermediates(ctx context.Context, c *Client, o UnenrollOptions, res *UnenrollResult) error {
	serials, err := c.list(ctx, "listing certificates in "+o.Mount+"/", o.Mount+"/certs")
	if err != nil {
		return err
	}
	skipped := 0
	for _, serial := range serials {
		s, err := c.read(ctx, "reading certificate "+serial, o.Mount+"/cert/"+serial)
		if err != nil {
			return err
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
		if _, err := c.write(ctx, "revoking certificate "+serial, o.Mount+"/revoke", map[string]any{"serial_number": serial}); err != nil {
			return err
		}
		res.Revoked = append(res.Revoked, serial)
	}
	res.step("intermediates of "+o.TrustDomain, len(res.Revoked) > 0, "%d revoked (now on the CRL), %d already expired", len(res.Revoked), skipped)
	return nil
}
