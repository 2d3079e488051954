package vaultadmin

import (
	"context"
	"strings"
)

// The few reads and writes a root rotation (internal/rotation) makes
// outside bootstrap, enrol and retire-root, each one call. They are here so
// that Vault's paths and error forms keep one home.

// ReadRoot reads the issuer ref (a name or an ID) of the mount; found is
// false when the mount has no such issuer.
func ReadRoot(ctx context.Context, c *Client, mount, ref string) (info *RootInfo, found bool, err error) {
	info, err = readIssuer(ctx, c, mount, ref)
	if isNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return info, true, nil
}

// DefaultIssuer returns the ID of the mount's default issuer ("" for none).
func DefaultIssuer(ctx context.Context, c *Client, mount string) (string, error) {
	s, err := c.read(ctx, "reading the default issuer of "+mount+"/", mount+"/config/issuers")
	if err != nil || s == nil {
		return "", err
	}
	id, _ := s.Data["default"].(string)
	return id, nil
}

// SetDefaultIssuer makes the issuer with this ID the mount's default, the
// one <mount>/root/sign-intermediate and every unpinned issuer signs with.
func SetDefaultIssuer(ctx context.Context, c *Client, mount, id string) error {
	_, err := c.write(ctx, "making issuer "+id+" the default issuer of "+mount+"/", mount+"/config/issuers", map[string]any{"default": id})
	return err
}

// ReadPolicy returns an ACL policy's text, "" when there is none.
func ReadPolicy(ctx context.Context, c *Client, name string) (string, error) {
	text, err := c.API.Sys().GetPolicyWithContext(ctx, name)
	if err != nil && !IsStatus(err, 404) {
		return "", wrap(c.Addr, "reading policy "+name, err)
	}
	return text, nil
}

// WritePolicy writes an ACL policy.
func WritePolicy(ctx context.Context, c *Client, name, text string) error {
	return wrap(c.Addr, "writing policy "+name, c.API.Sys().PutPolicyWithContext(ctx, name, text))
}

// ListPolicies lists the ACL policies' names, root left out.
func ListPolicies(ctx context.Context, c *Client) ([]string, error) {
	names, err := c.API.Sys().ListPoliciesWithContext(ctx)
	if err != nil {
		return nil, wrap(c.Addr, "listing ACL policies", err)
	}
	out := names[:0]
	for _, n := range names {
		if n != "root" {
			out = append(out, n)
		}
	}
	return out, nil
}

// SamePolicy compares two policy texts as Vault stores them (it may trim
// the trailing newline).
func SamePolicy(a, b string) bool { return strings.TrimSpace(a) == strings.TrimSpace(b) }
