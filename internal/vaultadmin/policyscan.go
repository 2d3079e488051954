package vaultadmin

import (
	"context"
	"regexp"
	"strings"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

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
	blocks, err := vaultcontract.PathBlocks(text)
	if err != nil {
		return mentionsIssuer(text, mount, refs)
	}
	for _, b := range blocks {
		if b.Err != nil {
			if mentionsIssuer(b.Pattern+"/", mount, refs) {
				return true
			}
			continue
		}
		if !b.GrantsWrite() {
			continue
		}
		for _, ref := range refs {
			if ref != "" && patternTargets(b.Pattern, mount+"/issuer/"+ref, "/sign-intermediate") {
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

// PolicyTrustDomain returns the trust domain an enrol policy lets its
// holder sign for (vaultcontract.ReadPolicies); it is "" when the text
// names none, or more than one.
func PolicyTrustDomain(text string) string {
	pols := vaultcontract.ReadPolicies(text)
	if len(pols) != 1 {
		return ""
	}
	return pols[0].TrustDomain
}

// TrustDomainOf reads the trust domain the cluster's enrol policy pins, for
// the commands that take only --cluster. It is "" when the policy is gone.
func TrustDomainOf(ctx context.Context, c *Client, policyName string) (string, error) {
	text, err := c.API.Sys().GetPolicyWithContext(ctx, policyName)
	if err != nil && !IsStatus(err, 404) {
		return "", wrap(c.Addr, "reading policy "+policyName, err)
	}
	return PolicyTrustDomain(text), nil
}
