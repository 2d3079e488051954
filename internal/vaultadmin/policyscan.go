package vaultadmin

import (
	"context"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// policyPath is one path block of a Vault ACL policy, as Vault decodes it.
type policyPath struct {
	Capabilities []string `hcl:"capabilities"`
	// Policy is the pre-0.9 shorthand: "deny", "read", "write", "list" or "sudo".
	Policy string `hcl:"policy"`
}

// grantsWrite reports whether the block lets a request POST to its path:
// sign-intermediate needs "update" (or "create"), and "deny" wins over both.
func (p policyPath) grantsWrite() bool {
	caps := p.Capabilities
	switch p.Policy {
	case "write", "sudo":
		caps = append(caps, "update")
	case "deny":
		caps = append(caps, "deny")
	}
	return !slices.Contains(caps, "deny") && (slices.Contains(caps, "update") || slices.Contains(caps, "create"))
}

// PolicyGrantsSigning reports whether the ACL policy text (HCL or JSON) lets
// its holder sign intermediates under the issuer of mount known by any of
// refs (its name, its ID): a path block that grants update or create on
// <mount>/issuer/<ref>/sign-intermediate and names that issuer literally.
//
// A wildcard over every issuer (pki/issuer/+/sign-intermediate, pki/*) is
// not counted: such a policy keeps working with the other roots, so it is
// no reason to keep this one. A policy Vault stored but this parser cannot
// read counts when it mentions <mount>/issuer/<ref>/ at all, so that an
// unreadable policy errs on the side of refusing.
func PolicyGrantsSigning(text, mount string, refs ...string) bool {
	f, err := hcl.ParseString(text)
	if err != nil {
		return mentionsIssuer(text, mount, refs)
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return mentionsIssuer(text, mount, refs)
	}
	for _, item := range list.Filter("path").Items {
		if len(item.Keys) == 0 {
			continue
		}
		pattern, ok := item.Keys[0].Token.Value().(string)
		if !ok {
			continue
		}
		var p policyPath
		if err := hcl.DecodeObject(&p, item.Val); err != nil {
			if mentionsIssuer(pattern+"/", mount, refs) {
				return true
			}
			continue
		}
		if !p.grantsWrite() {
			continue
		}
		for _, ref := range refs {
			if ref != "" && patternTargets(pattern, mount+"/issuer/"+ref, "/sign-intermediate") {
				return true
			}
		}
	}
	return false
}

func mentionsIssuer(text, mount string, refs []string) bool {
	for _, ref := range refs {
		if ref != "" && strings.Contains(text, mount+"/issuer/"+ref+"/") {
			return true
		}
	}
	return false
}

// patternTargets reports whether the Vault policy path pattern matches
// issuerPath+suffix and its literal part (before any + segment or trailing
// *) spells out issuerPath, i.e. the pattern is about that very issuer.
// Vault's pattern rules: a trailing * matches any rest, a whole-segment +
// matches one segment, a leading slash is ignored.
func patternTargets(pattern, issuerPath, suffix string) bool {
	pattern = strings.TrimPrefix(pattern, "/")
	glob := strings.HasSuffix(pattern, "*")
	body := strings.TrimSuffix(pattern, "*")
	segs := strings.Split(body, "/")
	literal := body
	var re strings.Builder
	re.WriteString("^")
	for i, s := range segs {
		if i > 0 {
			re.WriteString("/")
		}
		if s == "+" {
			if literal == body {
				literal = strings.Join(segs[:i], "/")
			}
			re.WriteString("[^/]+")
			continue
		}
		re.WriteString(regexp.QuoteMeta(s))
	}
	if glob {
		re.WriteString(".*")
	}
	re.WriteString("$")
	if !strings.HasPrefix(literal, issuerPath) {
		return false
	}
	return regexp.MustCompile(re.String()).MatchString(issuerPath + suffix)
}

// PinnedTrustDomain returns the trust domain an enrol policy pins: the one
// value its sign-intermediate path allows for permitted_uri_domains. It is
// "" when the text is no such policy.
func PinnedTrustDomain(text string) string {
	f, err := hcl.ParseString(text)
	if err != nil {
		return ""
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return ""
	}
	for _, item := range list.Filter("path").Items {
		if len(item.Keys) == 0 {
			continue
		}
		pattern, ok := item.Keys[0].Token.Value().(string)
		if !ok || !strings.HasSuffix(pattern, "/sign-intermediate") {
			continue
		}
		var p struct {
			Allowed map[string][]any `hcl:"allowed_parameters"`
		}
		if err := hcl.DecodeObject(&p, item.Val); err != nil {
			continue
		}
		for k, v := range p.Allowed {
			if strings.EqualFold(k, vaultcontract.ParamPermittedURIDomains) && len(v) == 1 {
				if td, ok := v[0].(string); ok {
					return td
				}
			}
		}
	}
	return ""
}

// TrustDomainOf reads the trust domain the cluster's enrol policy pins, for
// the commands that take only --cluster. It is "" when the policy is gone.
func TrustDomainOf(ctx context.Context, c *Client, policyName string) (string, error) {
	text, err := c.API.Sys().GetPolicyWithContext(ctx, policyName)
	if err != nil && !IsStatus(err, 404) {
		return "", wrap(c.Addr, "reading policy "+policyName, err)
	}
	return PinnedTrustDomain(text), nil
}
