package vaultadmin

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// A mount's trust anchors are the roots bootstrap generated, imported or
// adopted, recorded in their manual_chain (vaultcontract.AnchorChain), so
// that every cluster's ca.crt lists them and nothing else.

// mountIssuers reads every issuer of the mount, in Vault's list order.
func mountIssuers(ctx context.Context, c *Client, mount string) ([]*RootInfo, error) {
	ids, err := c.list(ctx, "listing the issuers of "+mount+"/", mount+"/issuers")
	if err != nil {
		return nil, err
	}
	var out []*RootInfo
	for _, id := range ids {
		is, err := readIssuer(ctx, c, mount, id)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, is)
	}
	return out, nil
}

func isRoot(r *RootInfo) bool { return r.Cert != nil && r.Cert.IsCA && pki.IsSelfSigned(r.Cert) }

// recordedAnchors is the set the mount's roots record: every root named in
// the manual_chain of a root that has one, oldest first. A mount no
// bootstrap has recorded anchors in yet gives none.
func recordedAnchors(issuers []*RootInfo) []*RootInfo {
	byID := map[string]*RootInfo{}
	for _, is := range issuers {
		if isRoot(is) {
			byID[is.IssuerID] = is
		}
	}
	seen := map[string]bool{}
	var out []*RootInfo
	for _, is := range issuers {
		if byID[is.IssuerID] == nil || len(is.manualChain) == 0 {
			continue
		}
		for _, id := range is.manualChain {
			if a := byID[id]; a != nil && !seen[id] {
				seen[id] = true
				out = append(out, a)
			}
		}
	}
	sortAnchors(out)
	return out
}

// sortAnchors orders anchors oldest first, then by ID, so that every
// root's chain lists them in the same order on every run.
func sortAnchors(as []*RootInfo) {
	sort.SliceStable(as, func(i, j int) bool {
		if !as[i].Cert.NotBefore.Equal(as[j].Cert.NotBefore) {
			return as[i].Cert.NotBefore.Before(as[j].Cert.NotBefore)
		}
		return as[i].IssuerID < as[j].IssuerID
	})
}

// anchorNames lists anchors (and extra, already labelled) sorted by label,
// so that a plan that cannot know a new root's ID yet lists them in the
// order its apply does.
func anchorNames(as []*RootInfo, extra ...string) string {
	var names []string
	for _, a := range as {
		names = append(names, issuerLabel(a))
	}
	names = append(names, extra...)
	slices.Sort(names)
	if len(names) == 0 {
		return "none recorded"
	}
	return strings.Join(names, ", ")
}

func issuerLabel(r *RootInfo) string {
	if r.IssuerName == "" {
		return r.IssuerID
	}
	return r.IssuerName + " (" + r.IssuerID + ")"
}

func anchorIDs(as []*RootInfo) []string {
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.IssuerID
	}
	return ids
}

// writeChains gives each of anchors the manual_chain
// vaultcontract.AnchorChain wants, where it differs; ids is the whole
// set.
func writeChains(ctx context.Context, c *Client, mount string, anchors []*RootInfo, ids []string) error {
	for _, a := range anchors {
		want := vaultcontract.AnchorChain(a.IssuerID, ids)
		if slices.Equal(a.manualChain, want) {
			continue
		}
		if _, err := c.patch(ctx, "recording the trust anchors in the manual_chain of issuer "+issuerLabel(a), mount+"/issuer/"+a.IssuerID,
			map[string]any{"manual_chain": want}); err != nil {
			return err
		}
	}
	return nil
}

// planTrustAnchors plans to add the root bootstrap ends with to the
// mount's recorded trust anchors and write the set into each anchor's
// manual_chain. A self-signed issuer imported into the mount by other
// means is never added, so it never reaches a cluster's ca.crt.
func (p *BootstrapPlan) planTrustAnchors(ctx context.Context, o BootstrapOptions, mounted bool) error {
	const name = "trust anchors"
	var issuers []*RootInfo
	if mounted {
		var err error
		if issuers, err = mountIssuers(ctx, p.c, o.Mount); err != nil {
			return err
		}
	}
	recorded := recordedAnchors(issuers)
	before := anchorNames(recorded)
	if p.Root != nil {
		all := recorded
		if !slices.ContainsFunc(all, func(a *RootInfo) bool { return a.IssuerID == p.Root.IssuerID }) {
			all = append(slices.Clone(recorded), p.Root)
			sortAnchors(all)
		}
		ids := anchorIDs(all)
		stale := slices.ContainsFunc(all, func(a *RootInfo) bool {
			return !slices.Equal(a.manualChain, vaultcontract.AnchorChain(a.IssuerID, ids))
		})
		if !stale {
			p.check(name, SystemVault, "every cluster's ca.crt lists %s", anchorNames(all))
			return nil
		}
		p.change(Step{Name: name, System: SystemVault, Detail: "recorded in the roots' manual_chain: every cluster's ca.crt lists " + anchorNames(all),
			Before: before, After: anchorNames(all)},
			func(ctx context.Context, _ *Step) error { return writeChains(ctx, p.c, o.Mount, all, ids) })
		return nil
	}
	after := anchorNames(recorded, o.IssuerName+" ("+KnownAfterApply+")")
	p.change(Step{Name: name, System: SystemVault, Detail: "recorded in the roots' manual_chain: every cluster's ca.crt lists " + after, Before: before, After: after},
		func(ctx context.Context, s *Step) error {
			root, err := readIssuer(ctx, p.c, o.Mount, *p.issuerID)
			if err != nil {
				return err
			}
			all := append(slices.Clone(recorded), root)
			sortAnchors(all)
			s.After = anchorNames(all)
			s.Detail = "recorded in the roots' manual_chain: every cluster's ca.crt lists " + s.After
			return writeChains(ctx, p.c, o.Mount, all, anchorIDs(all))
		})
	return nil
}

// planDropAnchor plans to take the retired root out of the manual_chain of
// every other anchor, after it is deleted, so that no chain names it.
func (p *RetirePlan) planDropAnchor(c *Client, mount string, target *RootInfo, others []*RootInfo) {
	var keep []*RootInfo
	for _, is := range others {
		if slices.Contains(is.manualChain, target.IssuerID) {
			keep = append(keep, is)
		}
	}
	if len(keep) == 0 {
		p.check("trust anchors", SystemVault, "no other root records %s", issuerLabel(target))
		return
	}
	remaining := recordedAnchors(others)
	ids := anchorIDs(remaining)
	p.change(Step{Name: "trust anchors", System: SystemVault, Detail: fmt.Sprintf("%s taken out of the roots' manual_chain: every cluster's ca.crt lists %s", issuerLabel(target), anchorNames(remaining)),
		Before: anchorNames(recordedAnchors(append(slices.Clone(others), target))), After: anchorNames(remaining)},
		func(ctx context.Context, _ *Step) error { return writeChains(ctx, c, mount, remaining, ids) })
}
