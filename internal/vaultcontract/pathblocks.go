package vaultcontract

import (
	"errors"
	"slices"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// PathBlock is one path block of a Vault ACL policy (HCL or JSON), as
// Vault's policy parser decodes it.
type PathBlock struct {
	// Pattern is the block's path, possibly with + and a trailing *.
	Pattern string `hcl:"-"`
	// Capabilities are its capabilities.
	Capabilities []string `hcl:"capabilities"`
	// Policy is the pre-0.9 shorthand: "deny", "read", "write", "list" or "sudo".
	Policy string `hcl:"policy"`
	// Allowed are its allowed_parameters.
	Allowed map[string][]any `hcl:"allowed_parameters"`
	// Err is set when the block's body does not decode; the other fields
	// are then empty.
	Err error `hcl:"-"`
}

// PathBlocks decodes every path block of a policy, in order; an error
// means the policy text does not parse at all.
func PathBlocks(text string) ([]PathBlock, error) {
	f, err := hcl.ParseString(text)
	if err != nil {
		return nil, err
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, errors.New("policy does not parse to an object list")
	}
	var out []PathBlock
	for _, item := range list.Filter("path").Items {
		if len(item.Keys) == 0 {
			continue
		}
		pattern, ok := item.Keys[0].Token.Value().(string)
		if !ok {
			continue
		}
		var b PathBlock
		if err := hcl.DecodeObject(&b, item.Val); err != nil {
			b = PathBlock{Err: err}
		}
		b.Pattern = pattern
		out = append(out, b)
	}
	return out, nil
}

// GrantsWrite reports whether the block lets a request POST to its path:
// sign-intermediate needs "update" (or "create"), and "deny" wins over both.
func (b PathBlock) GrantsWrite() bool {
	caps := b.Capabilities
	switch b.Policy {
	case "write", "sudo":
		caps = append(caps, "update")
	case "deny":
		caps = append(caps, "deny")
	}
	return !slices.Contains(caps, "deny") && (slices.Contains(caps, "update") || slices.Contains(caps, "create"))
}
