// Package meshconfig reads the part of Istio's mesh configuration that
// must agree with the intermediate in cacerts: the trust domain istiod
// signs workload identities for, and the aliases it accepts for peers.
// Status and the syncer check the same rules from here.
//
// istiod reads its mesh configuration from the ConfigMap "istio" (key
// "mesh", YAML) in its namespace, over its built-in defaults (trust domain
// cluster.local). istiod does not check the intermediate's URI name
// constraint when it signs: with another trust domain it hands out
// workload certificates that every peer refuses, with no error at issuance.
package meshconfig

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	// ConfigMapName is the ConfigMap istiod reads its mesh configuration
	// from, in its namespace (a revisioned install uses "istio-<revision>").
	ConfigMapName = "istio"
	// Key is the ConfigMap key holding the mesh configuration.
	Key = "mesh"
	// DefaultTrustDomain is istiod's trust domain when the mesh
	// configuration sets none.
	DefaultTrustDomain = "cluster.local"
)

// TrustDomains is what a mesh configuration says about trust domains.
type TrustDomains struct {
	// TrustDomain is meshConfig.trustDomain, DefaultTrustDomain when unset.
	TrustDomain string `json:"trustDomain"`
	// Defaulted is true when the configuration sets no trustDomain.
	Defaulted bool `json:"defaulted,omitempty"`
	// Aliases is meshConfig.trustDomainAliases.
	Aliases []string `json:"trustDomainAliases,omitempty"`
}

// Parse reads a mesh configuration's YAML (the ConfigMap's "mesh" key).
func Parse(mesh string) (TrustDomains, error) {
	var raw struct {
		TrustDomain        string   `json:"trustDomain"`
		TrustDomainAliases []string `json:"trustDomainAliases"`
	}
	if err := yaml.Unmarshal([]byte(mesh), &raw); err != nil {
		return TrustDomains{}, fmt.Errorf("key %s does not parse as a mesh configuration: %w", Key, err)
	}
	td := TrustDomains{TrustDomain: raw.TrustDomain, Aliases: raw.TrustDomainAliases}
	if td.TrustDomain == "" {
		td.TrustDomain, td.Defaulted = DefaultTrustDomain, true
	}
	return td, nil
}

// FromConfigMap reads the mesh configuration of cm; a ConfigMap without
// the key leaves istiod on its defaults, as istiod itself does.
func FromConfigMap(cm *corev1.ConfigMap) (TrustDomains, error) {
	td, err := Parse(cm.Data[Key])
	if err != nil {
		return td, fmt.Errorf("ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return td, nil
}

// describe names the trust domain and where it comes from, for messages.
func (t TrustDomains) describe(source string) string {
	if t.Defaulted {
		return fmt.Sprintf("Istio's trust domain is %q (istiod's default: %s sets no meshConfig.trustDomain)", t.TrustDomain, source)
	}
	return fmt.Sprintf("Istio's meshConfig.trustDomain is %q (%s)", t.TrustDomain, source)
}

// Mismatch says, naming both values, why istiod's trust domain disagrees
// with the intermediate's URI name constraint, or "" when it agrees.
// source names the ConfigMap.
func (t TrustDomains) Mismatch(constraint, source string) string {
	if t.TrustDomain == constraint {
		return ""
	}
	return fmt.Sprintf("%s, but the intermediate in cacerts is constrained to %q: istiod would sign workload certificates spiffe://%s/... that every peer refuses; set meshConfig.trustDomain to %q",
		t.describe(source), constraint, t.TrustDomain, constraint)
}

// MissingAliases returns the peers' trust domains, other than its own, that
// the configuration does not list in trustDomainAliases, sorted.
func (t TrustDomains) MissingAliases(peers []string) []string {
	var out []string
	for _, p := range peers {
		if p != t.TrustDomain && !slices.Contains(t.Aliases, p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// AliasesString is the aliases as a message shows them.
func (t TrustDomains) AliasesString() string {
	if len(t.Aliases) == 0 {
		return "none"
	}
	return strings.Join(t.Aliases, ", ")
}
