package vaultcontract

// Trust anchors: which roots every cluster's ca.crt lists.
//
// Vault keeps no mark of which of a PKI mount's self-signed issuers are
// meshtrust's roots: an unrelated certificate imported into the mount looks
// like one. So `meshtrust vault bootstrap` records the set it generated,
// imported or adopted in each of those roots' manual_chain: the root first
// (Vault requires it), then every other anchor. Vault then returns exactly
// that list as the ca_chain of the root and of every certificate it signs,
// and the issuer builds ca.crt from the live self-signed certificates of the
// signing issuer's ca_chain (<mount>/issuer/<ref>/json) alone, never from
// the mount's list of issuers. A root rotation is bootstrap adding root B:
// A's chain becomes [A, B] and B's [B, A], so clusters on either trust both;
// retire-root takes the old root out of the others' chains.

// AnchorChain is the manual_chain bootstrap gives the anchor self: self,
// then the other anchors in the order given (self, if listed, is skipped).
func AnchorChain(self string, anchors []string) []string {
	out := []string{self}
	for _, a := range anchors {
		if a != self {
			out = append(out, a)
		}
	}
	return out
}

// IssuerJSONPath is the issuer's certificate and ca_chain, readable without
// a token: where the issuer reads the trust anchors of the issuer it signs
// with (ref "" is the mount's default issuer).
func IssuerJSONPath(mount, ref string) string {
	if ref == "" {
		ref = "default"
	}
	return mount + "/issuer/" + ref + "/json"
}
