package vaultadmin

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// RetireOptions says which root to take out of the PKI mount.
type RetireOptions struct {
	// Mount is the PKI mount path, e.g. "pki".
	Mount string
	// IssuerName is the root issuer to delete.
	IssuerName string
	// Force skips the check that no ACL policy still lets a cluster sign
	// under the root, and only that check.
	Force bool
	// DeleteKey also deletes the root's private key once the issuer is
	// gone. Without it the key stays in Vault (unused), so the root could
	// still be re-imported from it.
	DeleteKey bool
}

// Validate checks the options before anything is sent to Vault.
func (o RetireOptions) Validate() error {
	switch {
	case o.Mount == "" || strings.Trim(o.Mount, "/") != o.Mount:
		return fmt.Errorf("invalid --mount %q: want a path such as pki, without leading or trailing slash", o.Mount)
	case o.IssuerName == "":
		return fmt.Errorf("--issuer-name is required: the root issuer to retire, such as meshtrust-root")
	case o.IssuerName == "default":
		return fmt.Errorf(`invalid --issuer-name "default": name the root itself, such as meshtrust-root`)
	case strings.Contains(o.IssuerName, "/"):
		return fmt.Errorf("invalid --issuer-name %q: an issuer name has no slash", o.IssuerName)
	}
	return nil
}

// RetireFacts is what Vault says about the mount, gathered before deciding
// whether the root may go.
type RetireFacts struct {
	// Mount is the PKI mount path.
	Mount string
	// Target is the issuer to retire.
	Target IssuerFacts
	// DefaultID is the ID of the mount's default issuer ("" for none).
	DefaultID string
	// Others are the mount's other issuers.
	Others []IssuerFacts
	// GrantingPolicies are the ACL policies that still let their holder
	// sign intermediates under Target; nil when not checked (--force).
	GrantingPolicies []string
}

// IssuerFacts is one issuer of the mount.
type IssuerFacts struct {
	// ID is Vault's issuer UUID; Name its issuer_name.
	ID, Name string
	// KeyID is the ID of its private key in the mount ("" when Vault holds
	// no key for it).
	KeyID string
	// Root is true for a self-signed CA certificate.
	Root bool
	// Anchor is true for a root bootstrap recorded among the mount's trust
	// anchors.
	Anchor bool
}

// RetireBlockers returns every reason the root may not be deleted yet, each
// with what to do about it; none means it may go.
func RetireBlockers(f RetireFacts, o RetireOptions) []string {
	var out []string
	name := f.Target.Name
	// Once bootstrap has recorded trust anchors, only they count as roots
	// clusters may move to: a stray self-signed issuer is none.
	recorded := slices.ContainsFunc(f.Others, func(is IssuerFacts) bool { return is.Anchor })
	var others []string
	for _, is := range f.Others {
		if is.Root && (is.Anchor || !recorded) {
			others = append(others, is.Name)
		}
	}
	if !f.Target.Root {
		out = append(out, fmt.Sprintf("issuer %s is not a root (its certificate is not a self-signed CA)", name))
	}
	next := "<new>"
	if len(others) == 1 && others[0] != "" {
		next = others[0]
	}
	switch {
	case len(others) == 0:
		out = append(out, fmt.Sprintf("it is the only root issuer of %s/: add the new root first with `meshtrust vault bootstrap --issuer-name <new> --set-default=false`%s",
			f.Mount, mountFlag(f.Mount)))
	case f.DefaultID != "" && f.DefaultID == f.Target.ID:
		out = append(out, fmt.Sprintf("it is the default issuer of %s/: make the new root the default first with `meshtrust vault bootstrap --issuer-name %s%s`",
			f.Mount, next, mountFlag(f.Mount)))
	}
	if len(f.GrantingPolicies) > 0 {
		n := len(f.GrantingPolicies)
		out = append(out, fmt.Sprintf("ACL %s %s still %s sign-intermediate on %s/issuer/%s: re-enroll %s with `meshtrust vault enroll ... --issuer-ref %s`, or pass --force",
			plural(n, "policy", "policies"), strings.Join(f.GrantingPolicies, ", "), plural(n, "grants", "grant"),
			f.Mount, name, plural(n, "that cluster", "those clusters"), next))
	}
	if o.DeleteKey && f.Target.KeyID != "" {
		var sharing []string
		for _, is := range f.Others {
			if is.KeyID == f.Target.KeyID {
				sharing = append(sharing, is.Name)
			}
		}
		if len(sharing) > 0 {
			out = append(out, fmt.Sprintf("its key %s is also the key of issuer %s: drop --delete-key", f.Target.KeyID, strings.Join(sharing, ", ")))
		}
	}
	return out
}

func mountFlag(mount string) string {
	if mount == "pki" {
		return ""
	}
	return " --mount " + mount
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// RefusedError is a retire-root that Vault would have carried out but that
// would have broken something; nothing was changed.
type RefusedError struct {
	// Addr is the Vault address; Mount and IssuerName the root.
	Addr, Mount, IssuerName string
	// Reasons says what is in the way and what to do, one per problem.
	Reasons []string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("vault at %s: refusing to retire issuer %s of %s/ (nothing changed): %s",
		e.Addr, e.IssuerName, e.Mount, strings.Join(e.Reasons, "; "))
}

// RetireResult is what Retire did.
type RetireResult struct {
	Result
	// Retired is the root deleted, nil when it was already absent.
	Retired *RootInfo `json:"retired,omitempty"`
	// KeyID is the retired root's key, deleted with DeleteKey, else kept.
	KeyID string `json:"keyID,omitempty"`
	// KeyDeleted is true when the key was deleted by this run.
	KeyDeleted bool `json:"keyDeleted"`
	// UncheckedPolicies is true when --force skipped the policy check.
	UncheckedPolicies bool `json:"uncheckedPolicies,omitempty"`
}

// RetirePlan is what Retire will do.
type RetirePlan struct {
	Plan
	// Retire is the root the apply deletes, nil when it is already absent.
	Retire *RootInfo `json:"retire,omitempty"`
	// KeyID is its key, or the leftover key --delete-key deletes.
	KeyID string `json:"keyID,omitempty"`
	// DeleteKey is true when the apply deletes KeyID.
	DeleteKey bool `json:"deleteKey"`
	// UncheckedPolicies is true when --force skipped the policy check.
	UncheckedPolicies bool `json:"uncheckedPolicies,omitempty"`
}

// Retire plans and applies in one go.
func Retire(ctx context.Context, c *Client, o RetireOptions) (*RetireResult, error) {
	return planThenApply(PlanRetire(ctx, c, o))(ctx)
}

// Apply carries the plan out.
func (p *RetirePlan) Apply(ctx context.Context) (*RetireResult, error) {
	steps, err := p.apply(ctx)
	res := &RetireResult{Result: resultOf(steps), Retired: p.Retire, KeyID: p.KeyID, UncheckedPolicies: p.UncheckedPolicies}
	if err != nil {
		// The issuer may be gone and only the key left: the result says so.
		return res, err
	}
	res.KeyDeleted = p.DeleteKey
	return res, nil
}

// PlanRetire plans to delete a root issuer from the PKI mount once nothing
// needs it: another root exists and is the default, and no ACL policy still
// lets a cluster sign under it (unless Force). It refuses with a
// *RefusedError otherwise. A root already gone is planned as unchanged. It
// changes nothing.
func PlanRetire(ctx context.Context, c *Client, o RetireOptions) (*RetirePlan, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if _, err := MountMaxTTL(ctx, c, o.Mount); err != nil {
		return nil, err
	}
	p := &RetirePlan{Plan: Plan{Operation: "retire-root"}}
	issuerStep := "issuer " + o.IssuerName
	target, err := readIssuer(ctx, c, o.Mount, o.IssuerName)
	if isNotFound(err) {
		p.check(issuerStep, SystemVault, "not in %s/: already retired", o.Mount)
		if o.DeleteKey {
			return p, p.planLeftoverKey(ctx, c, o)
		}
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	issuers, err := mountIssuers(ctx, c, o.Mount)
	if err != nil {
		return nil, err
	}
	others := slices.DeleteFunc(issuers, func(is *RootInfo) bool { return is.IssuerID == target.IssuerID })
	f, err := gatherRetireFacts(ctx, c, o, target, others)
	if err != nil {
		return nil, err
	}
	if blockers := RetireBlockers(*f, o); len(blockers) > 0 {
		return nil, &RefusedError{Addr: c.Addr, Mount: o.Mount, IssuerName: o.IssuerName, Reasons: blockers}
	}
	if o.Force {
		p.UncheckedPolicies = true
		p.check("ACL policies", SystemVault, "not checked (--force): a cluster still enrolled on %s can no longer sign", o.IssuerName)
	} else {
		p.check("ACL policies", SystemVault, "none grants sign-intermediate on %s/issuer/%s", o.Mount, o.IssuerName)
	}
	p.Retire, p.KeyID = target, target.keyID
	p.change(Step{Name: issuerStep, System: SystemVault, Detail: fmt.Sprintf("deleted (%s, %s, SHA-256 %s)", target.IssuerID, target.Subject, target.FingerprintSHA256),
		Before: fmt.Sprintf("root issuer %s (%s), SHA-256 %s", target.IssuerName, target.IssuerID, target.FingerprintSHA256), After: Absent},
		func(ctx context.Context, _ *Step) error {
			return c.delete(ctx, "deleting issuer "+o.IssuerName+" of "+o.Mount+"/", o.Mount+"/issuer/"+target.IssuerID)
		})
	p.planDropAnchor(c, o.Mount, target, others)
	switch {
	case target.keyID == "":
		p.check("key", SystemVault, "Vault held no key for this issuer")
	case !o.DeleteKey:
		p.check("key "+target.keyID, SystemVault, "kept, unused (--delete-key deletes it)")
	default:
		p.DeleteKey = true
		id := target.keyID
		p.change(Step{Name: "key " + id, System: SystemVault, Detail: "deleted", Before: "key " + id + " of issuer " + o.IssuerName, After: Absent},
			func(ctx context.Context, _ *Step) error {
				return c.delete(ctx, "deleting key "+id+" of "+o.Mount+"/ (issuer "+o.IssuerName+" is already deleted)", o.Mount+"/key/"+id)
			})
	}
	return p, nil
}

func gatherRetireFacts(ctx context.Context, c *Client, o RetireOptions, target *RootInfo, others []*RootInfo) (*RetireFacts, error) {
	f := &RetireFacts{Mount: o.Mount, Target: issuerFacts(target)}
	anchors := anchorIDs(recordedAnchors(append(slices.Clone(others), target)))
	for _, is := range others {
		facts := issuerFacts(is)
		facts.Anchor = slices.Contains(anchors, is.IssuerID)
		f.Others = append(f.Others, facts)
	}
	s, err := c.read(ctx, "reading the default issuer of "+o.Mount+"/", o.Mount+"/config/issuers")
	if err != nil {
		return nil, err
	}
	if s != nil {
		f.DefaultID, _ = s.Data["default"].(string)
	}
	if !o.Force {
		if f.GrantingPolicies, err = grantingPolicies(ctx, c, o.Mount, target.IssuerName, target.IssuerID); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func issuerFacts(r *RootInfo) IssuerFacts {
	return IssuerFacts{ID: r.IssuerID, Name: r.IssuerName, KeyID: r.keyID, Root: isRoot(r)}
}

// grantingPolicies reads every ACL policy and returns, sorted, those that
// let their holder sign under the issuer.
func grantingPolicies(ctx context.Context, c *Client, mount string, refs ...string) ([]string, error) {
	policies, err := readPolicies(ctx, c, "needed to find clusters still enrolled on the root; --force skips this")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range policies {
		if PolicyGrantsSigning(p.text, mount, refs...) {
			out = append(out, p.name)
		}
	}
	return out, nil
}

// planLeftoverKey handles --delete-key after the issuer is already gone,
// e.g. an earlier run without --delete-key, or one whose key deletion
// failed: bootstrap names a generated root's key like the issuer, so a key
// of that name is the root's. Vault itself refuses to delete a key that an
// issuer still uses.
func (p *RetirePlan) planLeftoverKey(ctx context.Context, c *Client, o RetireOptions) error {
	path := o.Mount + "/key/" + o.IssuerName
	s, err := c.read(ctx, "reading key "+o.IssuerName+" of "+o.Mount+"/", path)
	if err != nil && !(IsStatus(err, 400) || IsStatus(err, 404) || IsStatus(err, 500) && strings.Contains(err.Error(), "unable to find")) {
		return err
	}
	if err != nil || s == nil || s.Data == nil {
		p.check("key "+o.IssuerName, SystemVault, "no key of that name in %s/: nothing to delete", o.Mount)
		return nil
	}
	id, _ := s.Data["key_id"].(string)
	if id == "" {
		id = o.IssuerName
	}
	p.KeyID, p.DeleteKey = id, true
	p.change(Step{Name: "key " + id, System: SystemVault, Detail: fmt.Sprintf("deleted (key %s, left by the retired root)", o.IssuerName),
		Before: "key " + id + " (" + o.IssuerName + "), used by no issuer", After: Absent},
		func(ctx context.Context, _ *Step) error {
			return c.delete(ctx, "deleting key "+o.IssuerName+" ("+id+") of "+o.Mount+"/", o.Mount+"/key/"+id)
		})
	return nil
}
