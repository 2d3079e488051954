package vaultadmin

import (
	"context"
	"fmt"
	"slices"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// Enrolment is what one ACL policy lets its holder sign, read back from
// Vault: for a policy enrol wrote, one enrolled cluster.
type Enrolment struct {
	// PolicyName is the ACL policy's name.
	PolicyName string
	vaultcontract.Policy
}

// ClusterName is the enrolled cluster's name, or the policy's when the
// policy was not written by enrol.
func (e Enrolment) ClusterName() string {
	if e.Cluster != "" {
		return e.Cluster
	}
	return "(policy " + e.PolicyName + ")"
}

// Enrolled reads every ACL policy and returns what each lets its holder
// sign, sorted by policy name (vaultcontract.ReadPolicies): the enrolled
// clusters and their trust domains, as enrol wrote them.
func Enrolled(ctx context.Context, c *Client) ([]Enrolment, error) {
	policies, err := readPolicies(ctx, c, "to find the trust domains already enrolled")
	if err != nil {
		return nil, err
	}
	var out []Enrolment
	for _, p := range policies {
		for _, pol := range vaultcontract.ReadPolicies(p.text) {
			out = append(out, Enrolment{PolicyName: p.name, Policy: pol})
		}
	}
	return out, nil
}

// namedPolicy is an ACL policy's name and text.
type namedPolicy struct{ name, text string }

// readPolicies reads every ACL policy but root, sorted by name; why says
// what for, in the error when the token may not list them.
func readPolicies(ctx context.Context, c *Client, why string) ([]namedPolicy, error) {
	names, err := c.API.Sys().ListPoliciesWithContext(ctx)
	if err != nil {
		return nil, wrap(c.Addr, "listing ACL policies ("+why+")", err)
	}
	slices.Sort(names)
	var out []namedPolicy
	for _, n := range names {
		// root has no rules to read and grants everything anyway.
		if n == "root" {
			continue
		}
		text, err := c.API.Sys().GetPolicyWithContext(ctx, n)
		if err != nil {
			return nil, wrap(c.Addr, "reading ACL policy "+n, err)
		}
		out = append(out, namedPolicy{n, text})
	}
	return out, nil
}

// OverlapError refuses a trust domain that equals, contains or falls under
// one already enrolled: crypto/x509 applies a URI name constraint to every
// name under it, so one of the two clusters could sign the other's
// workload identities.
type OverlapError struct {
	// Addr is the Vault address.
	Addr string
	// TrustDomain is the one refused; Relation how it relates to With's
	// ("equals", "contains", "falls under").
	TrustDomain, Relation string
	// With is the enrolment it overlaps.
	With Enrolment
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("vault at %s: refusing trust domain %q: it %s %q, the trust domain of cluster %s (Vault policy %s), so one cluster's intermediate could sign the other's workload identities; choose a trust domain that neither equals, contains nor falls under another cluster's, or unenroll %s first",
		e.Addr, e.TrustDomain, e.Relation, e.With.TrustDomain, e.With.ClusterName(), e.With.PolicyName, e.With.ClusterName())
}

// checkOverlap refuses o's trust domain when it overlaps one that another
// policy than the cluster's own already grants.
func checkOverlap(ctx context.Context, c *Client, o EnrollOptions) error {
	enrolled, err := Enrolled(ctx, c)
	if err != nil {
		return err
	}
	for _, e := range enrolled {
		if e.PolicyName == o.PolicyName {
			continue
		}
		if rel := vaultcontract.Overlap(o.TrustDomain, e.TrustDomain); rel != "" {
			return &OverlapError{Addr: c.Addr, TrustDomain: o.TrustDomain, Relation: rel, With: e}
		}
	}
	return nil
}
