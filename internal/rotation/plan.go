package rotation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// PlannedStep is one step a run would take, for --dry-run.
type PlannedStep struct {
	Phase   Phase  `json:"phase"`
	Cluster string `json:"cluster,omitempty"`
	System  string `json:"system"`
	Name    string `json:"name"`
	Before  string `json:"before"`
	After   string `json:"after"`
}

// Plan is what a run would do from where the fleet stands.
type Plan struct {
	Rollback bool `json:"rollback"`
	// Phase is where the fleet stands; Clusters each cluster's phase.
	Phase    Phase            `json:"phase"`
	Clusters map[string]Phase `json:"clusters"`
	// Blocked names what stops the run now, if anything.
	Blocked string        `json:"blocked,omitempty"`
	Steps   []PlannedStep `json:"steps"`
}

// Plan observes the fleet and lists the steps a run would take, changing
// nothing. Steps of later phases assume the earlier ones succeed.
func (f *Fleet) Plan(ctx context.Context) (*Plan, error) {
	s, err := f.Observe(ctx)
	if err != nil {
		return nil, err
	}
	p := &Plan{Rollback: f.o.Rollback, Phase: s.State.Phase, Clusters: map[string]Phase{}}
	for i, c := range s.Clusters {
		p.Clusters[c.Context] = s.State.Clusters[i]
	}
	if err := s.blocked(); err != nil {
		p.Blocked = err.Error()
	}
	from, to := f.o.From, f.o.To
	add := func(ph Phase, cluster, system, name, before, after string) {
		p.Steps = append(p.Steps, PlannedStep{Phase: ph, Cluster: cluster, System: system, Name: name, Before: before, After: after})
	}
	renewal := "Certificate " + f.o.Names.CertificateNamespace + "/" + f.o.Names.CertificateName
	if f.o.Rollback {
		if s.Vault.Default == RefTo {
			add(BothTrusted, "", vaultadmin.SystemVault, "default issuer", to, from)
		}
		for _, c := range s.Clusters {
			if c.PolicyRef == RefTo {
				add(BothTrusted, c.Context, vaultadmin.SystemVault, "policy "+c.Policy, "signs under "+to, "signs under "+from)
			}
			if c.IssuerRef == RefTo {
				add(BothTrusted, c.Context, vaultadmin.SystemKubernetes, "VaultClusterIssuer "+c.IssuerName+" spec.pki.issuerRef", to, from)
			}
			if c.ChainRoot != s.Roots.From {
				add(BothTrusted, c.Context, vaultadmin.SystemKubernetes, renewal, "intermediate signed by "+to, "signed by "+from)
			}
		}
		if s.Vault.ToPresent {
			add(NotStarted, "", vaultadmin.SystemVault, "issuer "+to, "root issuer "+to, deleted(f.o.DeleteKey))
		}
		for _, c := range s.Clusters {
			if slices.Contains(c.SourceRoots, s.Roots.To) || s.Vault.ToPresent {
				add(NotStarted, c.Context, vaultadmin.SystemKubernetes, renewal, "ca.crt with "+to, "ca.crt without "+to+"; the syncer keeps it in root-cert.pem for meshtrust.io/root-grace")
			}
		}
		return p, nil
	}
	behind := func(ph Phase, each func(ClusterView)) {
		for i, c := range s.Clusters {
			if s.State.Clusters[i] < ph {
				each(c)
			}
		}
	}
	if !s.Vault.ToPresent {
		add(RootAdded, "", vaultadmin.SystemVault, "issuer "+to, vaultadmin.Absent, "root generated inside Vault, not the default")
	}
	behind(BothTrusted, func(c ClusterView) {
		add(BothTrusted, c.Context, vaultadmin.SystemKubernetes, renewal, "root-cert.pem "+rootNames(c.CACertsRoots, s.Roots), "root-cert.pem and istio-ca-root-cert with "+from+" and "+to)
	})
	behind(IntermediatesMoved, func(c ClusterView) {
		if c.PolicyRef != RefTo {
			add(IntermediatesMoved, c.Context, vaultadmin.SystemVault, "policy "+orUnknown(c.Policy), "signs under "+from, "signs under "+to)
		}
		if c.IssuerRef != RefTo {
			add(IntermediatesMoved, c.Context, vaultadmin.SystemKubernetes, "VaultClusterIssuer "+c.IssuerName+" spec.pki.issuerRef", from, to)
		}
		add(IntermediatesMoved, c.Context, vaultadmin.SystemKubernetes, renewal, "intermediate signed by "+from, "signed by "+to)
	})
	if s.Vault.Default != RefTo {
		add(DefaultSwitched, "", vaultadmin.SystemVault, "default issuer", from, to)
	}
	if s.Vault.FromPresent {
		until := "known once every cluster has moved"
		if !s.WaitEnds.IsZero() {
			until = s.WaitEnds.UTC().Format("2006-01-02T15:04:05Z")
		}
		add(OldRootDropped, "", "wait", "wait "+vaultadmin.Dur(f.o.Wait)+" after the last cluster moved", "", "until "+until)
		add(OldRootDropped, "", vaultadmin.SystemVault, "issuer "+from, "root issuer "+from, deleted(f.o.DeleteKey))
	}
	behind(OldRootDropped, func(c ClusterView) {
		add(OldRootDropped, c.Context, vaultadmin.SystemKubernetes, renewal, "ca.crt with "+from, "ca.crt without "+from)
	})
	behind(OldRootRetired, func(c ClusterView) {
		add(OldRootRetired, c.Context, "wait", "root-cert.pem (the syncer)", "holds "+from, "without "+from+" at the end of meshtrust.io/root-grace")
	})
	return p, nil
}

func deleted(key bool) string {
	if key {
		return vaultadmin.Absent + ", its key deleted"
	}
	return vaultadmin.Absent + ", its key kept"
}

func orUnknown(s string) string {
	if s == "" {
		return "(not found)"
	}
	return s
}

// rootNames names the fingerprints by the rotation's roots.
func rootNames(fps []string, r Roots) string {
	out := make([]string, len(fps))
	for i, fp := range fps {
		switch fp {
		case r.From:
			out[i] = r.FromName
		case r.To:
			out[i] = r.ToName
		default:
			out[i] = shortOne(fp)
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}

// EnrolledClusters names the clusters whose Vault policy is enrol's and
// signs under from or to: a policy meshtrust-<cluster> that grants
// sign-intermediate on one of those issuers.
func EnrolledClusters(ctx context.Context, c *vaultadmin.Client, mount, from, to string) ([]string, error) {
	names, err := vaultadmin.ListPolicies(ctx, c)
	if err != nil {
		return nil, err
	}
	var out []string
	prefix := vaultcontract.PolicyName("")
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		text, err := vaultadmin.ReadPolicy(ctx, c, n)
		if err != nil {
			return nil, err
		}
		if vaultadmin.PolicyGrantsSigning(text, mount, from, to) {
			out = append(out, strings.TrimPrefix(n, prefix))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vault at %s: no policy %s<cluster> signs under %s or %s: no enrolled cluster to rotate", c.Addr, prefix, from, to)
	}
	slices.Sort(out)
	return out, nil
}
