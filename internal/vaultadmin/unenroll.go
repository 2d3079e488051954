package vaultadmin

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// UnenrollOptions says what to remove for one cluster.
type UnenrollOptions struct {
	// Cluster is the cluster name given to enroll.
	Cluster string
	// PolicyName is the cluster's policy; a role bound to it (or named
	// Role) in any kubernetes or AppRole auth mount is the cluster's.
	PolicyName string
	// Role is the role name enroll gave the cluster, in either auth method.
	Role string
	// DisableAuthMount also disables the cluster's own kubernetes auth
	// mount (the one whose description is
	// vaultcontract.AuthMountDescription(Cluster)), which revokes every
	// token it issued. No other mount is ever disabled: a shared AppRole
	// mount holds other clusters' roles.
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

// Default fills every name left empty with the one enrol gives it.
func (o *UnenrollOptions) Default() {
	var authMount string
	defaultNames(o.Cluster, AuthKubernetes, &o.Mount, &o.CommonName, &o.PolicyName, &o.Role, &authMount)
}

// Validate checks the options before anything is sent to Vault.
func (o UnenrollOptions) Validate() error {
	if err := vaultcontract.ValidateClusterName(o.Cluster); err != nil {
		return err
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

// UnenrollRefusedError is an unenroll that could not find, or would not
// remove, everything enroll made for the cluster; nothing was changed.
type UnenrollRefusedError struct {
	// Addr is the Vault address; Cluster the cluster.
	Addr, Cluster string
	// Remains says what would be left, and why, one entry each.
	Remains []string
}

func (e *UnenrollRefusedError) Error() string {
	return fmt.Sprintf("vault at %s: refusing to unenroll cluster %s (nothing changed), since this would remain: %s", e.Addr, e.Cluster, strings.Join(e.Remains, "; "))
}

// PlanUnenroll plans to remove everything enroll made for the cluster,
// whichever auth method it used: every role in a kubernetes or AppRole
// auth mount that is named like the cluster's or bound to its policy (an
// AppRole role's secret IDs go with it), the cluster's own kubernetes
// mount (disabled, revoking its tokens, unless DisableAuthMount is off),
// the policy, and with Revoke its intermediates. It refuses, naming what
// would remain, when a mount cannot be searched. A last step, run by the
// apply, searches again and fails naming anything left. Like enroll, a
// second run changes nothing. It changes nothing.
func PlanUnenroll(ctx context.Context, c *Client, o UnenrollOptions) (*UnenrollPlan, error) {
	o.Default()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	p := &UnenrollPlan{Plan: Plan{Operation: "unenroll"}}
	found, err := findEnrolment(ctx, c, o)
	if err != nil {
		return nil, err
	}
	if len(found.unsearched) > 0 {
		return nil, &UnenrollRefusedError{Addr: c.Addr, Cluster: o.Cluster, Remains: found.unsearched}
	}
	p.planAuth(c, o, found)
	current, err := c.API.Sys().GetPolicyWithContext(ctx, o.PolicyName)
	if err != nil && !IsStatus(err, 404) {
		return nil, wrap(c.Addr, "reading policy "+o.PolicyName, err)
	}
	td := o.TrustDomain
	if td == "" {
		td = PolicyTrustDomain(current)
	}
	if o.Revoke && td == "" {
		return nil, fmt.Errorf("--revoke: pass --trust-domain: policy %s is absent or names no single trust domain to find the cluster's intermediates by", o.PolicyName)
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
	entry := ""
	if td == "" {
		p.check("CRL exchange entry", SystemVault, "trust domain unknown (policy %s absent or naming no single trust domain, no --trust-domain): entry left as it is", o.PolicyName)
	} else if entry, err = planCRLEntryRemoval(ctx, &p.Plan, c, td); err != nil {
		return nil, err
	}
	p.add(Step{Name: "nothing left", System: SystemVault, Detail: nothingLeft(o, entry),
		run: func(ctx context.Context, _ *Step) error { return verifyUnenrolled(ctx, c, o, entry) }})
	return p, nil
}

// planAuth plans the auth side: disable the cluster's own kubernetes
// mount, delete its roles everywhere else.
func (p *UnenrollPlan) planAuth(c *Client, o UnenrollOptions, f *enrolment) {
	if len(f.roles) == 0 && len(f.ownMounts) == 0 {
		p.check("auth roles", SystemVault, "no role named %s or bound to policy %s in any kubernetes or AppRole auth mount", o.Role, o.PolicyName)
	}
	disabled := map[string]bool{}
	for _, m := range f.ownMounts {
		if !o.DisableAuthMount {
			p.check("auth mount "+m.path, SystemVault, "kept (--keep-auth-mount); only the cluster's roles in it are deleted")
			continue
		}
		disabled[m.path] = true
		path := strings.TrimSuffix(m.path, "/")
		p.change(Step{Name: "auth mount " + m.path, System: SystemVault, Detail: "disabled; its roles go with it and every token it issued is revoked",
			Before: fmt.Sprintf("%s auth, description %q", m.out.Type, m.out.Description), After: Absent},
			func(ctx context.Context, _ *Step) error {
				return wrap(c.Addr, "disabling auth/"+path, c.API.Sys().DisableAuthWithContext(ctx, path))
			})
	}
	for _, r := range f.roles {
		if disabled[r.mount] {
			continue
		}
		path := r.path()
		before := r.kind + " role bound to policies " + strings.Join(r.policies, ",")
		detail := "deleted"
		if r.kind == string(AuthAppRole) {
			before += fmt.Sprintf(", %d secret ID(s)", r.secretIDs)
			detail = "deleted with its secret IDs, which stop working"
		}
		p.change(Step{Name: path, System: SystemVault, Detail: detail, Before: before, After: Absent},
			func(ctx context.Context, _ *Step) error { return c.delete(ctx, "deleting "+path, path) })
	}
}

// enrolment is what a search of Vault's auth mounts found of one cluster.
type enrolment struct {
	// ownMounts are the kubernetes mounts enroll created for the cluster.
	ownMounts []authMount
	// roles are the cluster's roles in any kubernetes or AppRole mount.
	roles []authRole
	// unsearched says which mounts could not be searched, and why.
	unsearched []string
}

type authMount struct {
	// path is the mount path with its trailing slash, without "auth/".
	path string
	out  *vaultapi.MountOutput
}

type authRole struct {
	// mount is the mount path with its trailing slash.
	mount, name, kind string
	policies          []string
	// secretIDs counts an AppRole role's secret IDs.
	secretIDs int
}

func (r authRole) path() string { return "auth/" + r.mount + "role/" + r.name }

// findEnrolment searches every kubernetes and AppRole auth mount for the
// cluster's roles: named o.Role, or bound to o.PolicyName.
func findEnrolment(ctx context.Context, c *Client, o UnenrollOptions) (*enrolment, error) {
	auths, err := c.API.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, wrap(c.Addr, "listing auth methods", err)
	}
	f := &enrolment{}
	paths := make([]string, 0, len(auths))
	for path := range auths {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	for _, path := range paths {
		m := auths[path]
		if m.Type != string(AuthKubernetes) && m.Type != string(AuthAppRole) {
			continue
		}
		if m.Type == string(AuthKubernetes) && m.Description == vaultcontract.AuthMountDescription(o.Cluster) {
			f.ownMounts = append(f.ownMounts, authMount{path: path, out: m})
		}
		names, err := c.list(ctx, "listing the roles of auth/"+path, "auth/"+path+"role")
		if err != nil && !IsStatus(err, 404) {
			f.unsearched = append(f.unsearched, fmt.Sprintf("auth/%s could not be searched for roles of cluster %s: %v", path, o.Cluster, err))
			continue
		}
		for _, name := range names {
			r := authRole{mount: path, name: name, kind: m.Type}
			s, err := c.read(ctx, "reading "+r.path(), r.path())
			if err != nil {
				f.unsearched = append(f.unsearched, fmt.Sprintf("%s could not be read: %v", r.path(), err))
				continue
			}
			if s != nil {
				r.policies = stringList(s.Data["token_policies"])
			}
			if name != o.Role && !slices.Contains(r.policies, o.PolicyName) {
				continue
			}
			if m.Type == string(AuthAppRole) {
				ids, err := c.list(ctx, "listing the secret IDs of "+r.path(), r.path()+"/secret-id")
				if err != nil && !IsStatus(err, 404) {
					return nil, err
				}
				r.secretIDs = len(ids)
			}
			f.roles = append(f.roles, r)
		}
	}
	return f, nil
}

// verifyUnenrolled searches again after the apply and fails naming what
// is left, so that an unenroll that exits 0 left nothing behind.
// entry is the cluster's CRL exchange entry, "" when unenroll does not
// know it.
func verifyUnenrolled(ctx context.Context, c *Client, o UnenrollOptions, entry string) error {
	f, err := findEnrolment(ctx, c, o)
	if err != nil {
		return err
	}
	remains := f.unsearched
	for _, r := range f.roles {
		remains = append(remains, r.path())
	}
	if o.DisableAuthMount {
		for _, m := range f.ownMounts {
			remains = append(remains, "auth mount "+m.path)
		}
	}
	if text, err := c.API.Sys().GetPolicyWithContext(ctx, o.PolicyName); err == nil && text != "" {
		remains = append(remains, "policy "+o.PolicyName)
	}
	if entry != "" {
		s, err := c.read(ctx, "reading "+entry, entry)
		if err != nil {
			return err
		}
		if s != nil {
			remains = append(remains, "CRL exchange entry "+entry)
		}
	}
	if len(remains) > 0 {
		return fmt.Errorf("vault at %s: cluster %s still has, after unenroll: %s", c.Addr, o.Cluster, strings.Join(remains, ", "))
	}
	return nil
}

func nothingLeft(o UnenrollOptions, entry string) string {
	d := "no role of cluster " + o.Cluster + " in any kubernetes or AppRole auth mount"
	if entry == "" {
		return d + ", and no policy " + o.PolicyName
	}
	return d + ", no policy " + o.PolicyName + " and no CRL exchange entry " + entry
}

// BelongsTo reports whether cert is an intermediate signed for trustDomain
// with the given common name: what enroll's policy lets a cluster obtain.
func BelongsTo(cert *x509.Certificate, trustDomain, commonName string) bool {
	return cert.IsCA && !pki.IsSelfSigned(cert) &&
		slices.Equal(cert.PermittedURIDomains, []string{trustDomain}) &&
		(commonName == "" || cert.Subject.CommonName == commonName)
}
