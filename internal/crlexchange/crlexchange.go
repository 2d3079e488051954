// Package crlexchange is how meshtrust's issuer and syncer hand CRLs to each
// other inside one cluster: one ConfigMap per Vault issuer object, which both
// write with server-side apply, each owning its own keys.
//
// The issuer (the only side that talks to Vault) writes Vault's CRLs of the
// mount (KeyVaultCRLs), the other clusters' intermediates with their CRLs as
// it read and checked them from Vault (KeyPeers), and what it did (KeyStatus).
// The syncer writes, per Certificate, this cluster's own intermediates with
// the CRLs it signed for them (OwnKey), which the issuer publishes to Vault
// for the other clusters.
//
// Why a ConfigMap: CRLs and CA certificates are public, the syncer never
// talks to Vault, the issuer never reads the syncer's Secrets, and a watch on
// it wakes the other side at once. Why the other clusters' intermediate CRLs
// at all: Envoy checks every CA of a peer's chain against the CRLs it has and
// refuses the peer when one of them has none, so a cluster whose ca-crl.pem
// carried only the roots' CRLs and its own would refuse every other
// cluster's workloads.
package crlexchange

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// The issuer kind whose CRLs travel through an exchange ConfigMap, and the
// namespaced kind whose do not. They are issuer/api/v1alpha1's; the syncer
// does not import the issuer's packages, so they are restated here and a
// test checks they agree.
const (
	Group              = "meshtrust.io"
	KindClusterIssuer  = "VaultClusterIssuer"
	KindIssuer         = "VaultIssuer"
	maxObjectNameBytes = 253
)

// Keys and marks of the exchange ConfigMap.
const (
	// LabelKey=LabelValue marks an exchange ConfigMap; both sides cache
	// only ConfigMaps that carry it.
	LabelKey   = "meshtrust.io/crl-exchange"
	LabelValue = "true"
	// IssuerAnnotation names the VaultClusterIssuer the ConfigMap is for;
	// both sides set it, and map the ConfigMap's events back through it.
	IssuerAnnotation = "meshtrust.io/crl-issuer"
	// KeyVaultCRLs holds Vault's CRL of every live issuer of the mount
	// (PEM X509 CRL blocks). Written by the issuer.
	KeyVaultCRLs = "vault-crl.pem"
	// KeyPeers holds the other clusters' intermediates (CERTIFICATE blocks)
	// and their CRLs, as published in Vault and checked by the issuer.
	// Written by the issuer.
	KeyPeers = "peers.pem"
	// KeyStatus is Status as JSON. Written by the issuer.
	KeyStatus = "status.json"

	ownPrefix = "own."
	ownSuffix = ".pem"
)

// Field managers of the two sides' server-side applies.
const (
	IssuerFieldManager = "meshtrust-issuer-crl"
	SyncerFieldManager = "meshtrust-syncer-crl"
)

// RefreshAnnotation on a VaultClusterIssuer asks its issuer
// to refresh the CRLs now (any new value); `meshtrust vault revoke` sets it
// in every cluster it reaches.
const RefreshAnnotation = "meshtrust.io/crl-refresh"

// ConfigMapName is the exchange ConfigMap of the issuer kind/name.
func ConfigMapName(kind, name string) string {
	return boundedName(strings.ToLower(kind)+"-", name, "-crl")
}

// ConfigMapFor returns the exchange ConfigMap of a Certificate's issuerRef,
// in clusterResourceNamespace (where VaultClusterIssuers keep their Secrets
// too). ok is false for any other issuer, whose Certificates get no CRLs:
// namespaced VaultIssuers take part in no exchange, which keeps both sides'
// ConfigMap access to that one namespace.
func ConfigMapFor(group, kind, name, clusterResourceNamespace string) (types.NamespacedName, bool) {
	if group != Group || kind != KindClusterIssuer || name == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: clusterResourceNamespace, Name: ConfigMapName(kind, name)}, true
}

// OwnKey is the key under which the syncer publishes the intermediates of
// the Certificate namespace/name.
func OwnKey(namespace, name string) string {
	return boundedName(ownPrefix, namespace+"."+name, ownSuffix)
}

// IsOwnKey reports whether key is one the syncer writes.
func IsOwnKey(key string) bool {
	return strings.HasPrefix(key, ownPrefix) && strings.HasSuffix(key, ownSuffix)
}

// boundedName joins prefix, middle and suffix, replacing middle by a digest
// when the whole would exceed the 253 bytes of an object name or ConfigMap
// key.
func boundedName(prefix, middle, suffix string) string {
	if len(prefix)+len(middle)+len(suffix) <= maxObjectNameBytes {
		return prefix + middle + suffix
	}
	sum := sha256.Sum256([]byte(middle))
	return prefix + hex.EncodeToString(sum[:16]) + suffix
}

// Status is what the issuer reports about its last refresh.
type Status struct {
	// RefreshedAt is when the issuer last read Vault successfully.
	RefreshedAt time.Time `json:"refreshedAt"`
	// TrustDomain is this cluster's, the issuer's spec.intermediate.trustDomain:
	// its entry in Vault's exchange.
	TrustDomain string `json:"trustDomain"`
	// Peers are the other clusters enrolled in the exchange, by trust domain.
	Peers []Peer `json:"peers"`
	// Answered is the VaultClusterIssuer's RefreshAnnotation this refresh
	// saw: whoever set it knows the issuer has refreshed since.
	Answered string `json:"answered,omitempty"`
	// Published maps the SHA-256 fingerprint of each of this cluster's
	// intermediates to when the issuer first found it in Vault's exchange,
	// where the other clusters read it.
	Published map[string]time.Time `json:"published"`
}

// Peer is another cluster in the exchange.
type Peer struct {
	// TrustDomain names the cluster's entry.
	TrustDomain string `json:"trustDomain"`
	// Intermediates is how many of its intermediates, with their CRLs,
	// KeyPeers carries.
	Intermediates int `json:"intermediates"`
	// Problem says why the entry (or part of it) was not carried; empty
	// when all of it was. An entry enrol created but no controller has
	// filled yet says so here.
	Problem string `json:"problem,omitempty"`
}

// Encode renders s for KeyStatus, with peers sorted so that the same status
// always gives the same bytes.
func (s Status) Encode() (string, error) {
	sort.Slice(s.Peers, func(i, j int) bool { return s.Peers[i].TrustDomain < s.Peers[j].TrustDomain })
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding the CRL exchange status: %w", err)
	}
	return string(b) + "\n", nil
}

// DecodeStatus reads KeyStatus.
func DecodeStatus(text string) (Status, error) {
	var s Status
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		return Status{}, fmt.Errorf("key %s: %w", KeyStatus, err)
	}
	return s, nil
}

// PendingPeers lists the trust domains of peers whose entry carries no
// intermediate yet: enrolled clusters whose controllers have published no
// CRL.
func (s Status) PendingPeers() []string {
	var out []string
	for _, p := range s.Peers {
		if p.Intermediates == 0 {
			out = append(out, p.TrustDomain)
		}
	}
	return out
}
