package vaultcontract

import (
	"fmt"
	"strconv"
	"strings"
)

// The CRL exchange: where in Vault each enrolled cluster publishes its own
// intermediates with the CRLs it signed for them, so that every other
// cluster can carry them. Envoy refuses a peer's chain unless it has a CRL
// from every CA in it, the peer's intermediate included, and only the
// cluster holding that intermediate's key can sign one; Vault is the one
// place all clusters reach. Entries are public data (certificates and
// CRLs); the policy lets a cluster write only its own.

// CRLExchangeMount is the KV (version 1) mount bootstrap enables for the
// exchange.
const CRLExchangeMount = "meshtrust-crl"

// Fields of an exchange entry.
const (
	// CRLEntryPEM holds the cluster's live intermediates (CERTIFICATE
	// blocks) and their CRLs (X509 CRL blocks); empty in an entry enrol
	// made that no controller has filled yet.
	CRLEntryPEM = "pem"
	// CRLEntryCluster is the cluster name enrol gave, for people reading
	// the mount.
	CRLEntryCluster = "cluster"
	// CRLEntryUpdated is when the cluster's issuer last wrote the entry
	// (RFC 3339).
	CRLEntryUpdated = "updated_at"
)

// CRLExchangePath is the entry of the cluster with trustDomain: trust
// domains never overlap and the policy pins one per cluster, so they key
// the entries.
func CRLExchangePath(trustDomain string) string { return CRLExchangeMount + "/" + trustDomain }

// crlExchangeHCL is the part of the cluster's policy for the exchange: write
// its own entry, read and list everyone's.
func (p Policy) crlExchangeHCL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# The CRL exchange: publish this cluster's intermediates' CRLs, read the others'.\n")
	fmt.Fprintf(&b, "path %s {\n  capabilities = [\"create\", \"update\", \"read\"]\n}\n", strconv.Quote(CRLExchangePath(p.TrustDomain)))
	fmt.Fprintf(&b, "\npath %s {\n  capabilities = [\"read\", \"list\"]\n}\n", strconv.Quote(CRLExchangeMount+"/*"))
	return b.String()
}
