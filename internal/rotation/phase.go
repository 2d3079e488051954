package rotation

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Phase is how far a rotation has come. Its number is the step.
type Phase int

// The phases in order; Last is the end of a forward rotation.
const (
	NotStarted Phase = iota
	RootAdded
	BothTrusted
	IntermediatesMoved
	DefaultSwitched
	OldRootDropped
	OldRootRetired

	Last = OldRootRetired
)

var phaseNames = []string{"not-started", "root-added", "both-trusted", "intermediates-moved", "default-switched", "old-root-dropped", "old-root-retired"}

func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return fmt.Sprintf("phase(%d)", int(p))
	}
	return phaseNames[p]
}

// Label is "3/6 intermediates-moved", as progress lines and status print it.
func (p Phase) Label() string { return fmt.Sprintf("%d/%d %s", int(p), int(Last), p) }

// Roots names the two roots by issuer name and SHA-256 fingerprint; a
// fingerprint is empty while that issuer is not in Vault and was never seen.
type Roots struct {
	FromName, ToName string
	From, To         string
}

// Ref says which of the two roots something points at.
type Ref string

// What a cluster's Vault policy or issuer points at.
const (
	RefFrom  Ref = "from"
	RefTo    Ref = "to"
	RefOther Ref = "other"
)

// ClusterView is what one cluster shows, read by Observe.
type ClusterView struct {
	// Context is the kube context.
	Context string
	// Err is set when the cluster could not be read; nothing else is then.
	Err error
	// Policy is the Vault policy enrol wrote for the cluster and which root
	// it lets the cluster sign under.
	Policy     string
	PolicyRef  Ref
	IssuerName string
	// IssuerRef is what the VaultClusterIssuer's spec.pki.issuerRef names.
	IssuerRef Ref
	// SourceRoots are the fingerprints in cert-manager's ca.crt, and
	// SourceSigner the root that signed the intermediate in tls.crt.
	SourceRoots  []string
	SourceSigner string
	// CACertsRoots are root-cert.pem's fingerprints in file order, and
	// ChainRoot the root at the end of cert-chain.pem (the one that signed
	// the intermediate istiod is given).
	CACertsRoots []string
	ChainRoot    string
	// Published are the fingerprints in istio-system's istio-ca-root-cert,
	// which istiod writes once it has loaded root-cert.pem. CheckIstiod is
	// false for a cluster that runs no istiod yet.
	Published   []string
	CheckIstiod bool
	// CACertsCRLs and PublishedCRLs are the roots cacerts' ca-crl.pem and
	// istiod's istio-ca-crl hold a valid CRL of: a proxy checking CRLs, as
	// Envoy does, refuses a peer's chain to a root it has no CRL of.
	CACertsCRLs, PublishedCRLs CRLCover
	// GraceEnds is when the syncer drops the roots it keeps after ca.crt
	// lost them (zero when it keeps none).
	GraceEnds time.Time
	// Record is the rotation annotation on the Certificate, nil if none.
	Record *Record
}

// CRLCover is what one CRL file covers.
type CRLCover struct {
	// Carried is false when the file holds no CRL: proxies check none.
	Carried bool
	// Roots are the fingerprints of the roots it holds a valid CRL of.
	Roots []string
}

// covers reports whether a proxy checking the file accepts chains to fp.
func (c CRLCover) covers(fp string) bool { return !c.Carried || slices.Contains(c.Roots, fp) }

// trusts reports whether root-cert.pem and (when checked) istiod's
// published bundle hold fp, and the CRLs carried there cover it, so that
// the cluster's proxies accept peers' chains to fp.
func (v ClusterView) trusts(fp string) bool {
	return fp != "" && slices.Contains(v.CACertsRoots, fp) && v.CACertsCRLs.covers(fp) &&
		(!v.CheckIstiod || slices.Contains(v.Published, fp) && v.PublishedCRLs.covers(fp))
}

// distrusts reports whether neither root-cert.pem nor the published
// bundle holds fp.
func (v ClusterView) distrusts(fp string) bool {
	return !slices.Contains(v.CACertsRoots, fp) && (!v.CheckIstiod || !slices.Contains(v.Published, fp))
}

// onTo is true when everything that decides what the cluster signs with
// names the new root, and istiod is given an intermediate signed by it.
func (v ClusterView) onTo(r Roots) bool {
	return v.PolicyRef == RefTo && v.IssuerRef == RefTo && v.ChainRoot == r.To && v.SourceSigner == r.To
}

// onFrom is the same for the old root.
func (v ClusterView) onFrom(r Roots) bool {
	return v.PolicyRef == RefFrom && v.IssuerRef == RefFrom && v.ChainRoot == r.From && v.SourceSigner == r.From
}

// Phase is how far the cluster itself has come (DefaultSwitched is Vault's
// alone, so a cluster never shows it).
func (v ClusterView) Phase(r Roots) Phase {
	if v.Err != nil || r.To == "" {
		return NotStarted
	}
	droppedFrom := r.From == "" || !slices.Contains(v.SourceRoots, r.From)
	switch {
	case v.onTo(r) && droppedFrom && v.distrusts(r.From) && v.trusts(r.To):
		return OldRootRetired
	case v.onTo(r) && droppedFrom && v.trusts(r.To):
		return OldRootDropped
	case v.onTo(r) && v.trusts(r.From) && v.trusts(r.To):
		return IntermediatesMoved
	case v.ChainRoot == r.From && v.trusts(r.From) && v.trusts(r.To):
		return BothTrusted
	}
	return NotStarted
}

// rolledBack is true when the cluster signs under the old root again and
// ca.crt no longer carries the new one.
func (v ClusterView) rolledBack(r Roots) bool {
	return v.onFrom(r) && v.trusts(r.From) && (r.To == "" || !slices.Contains(v.SourceRoots, r.To))
}

// VaultView is what the PKI mount shows.
type VaultView struct {
	// FromPresent and ToPresent say whether each root issuer exists.
	FromPresent, ToPresent bool
	// Default says which root is the mount's default issuer.
	Default Ref
}

// State is where the fleet stands.
type State struct {
	// Phase is the last phase every cluster (and Vault) shows.
	Phase Phase
	// Clusters are each cluster's own phase, in the order given.
	Clusters []Phase
}

// Derive computes where the fleet stands. It refuses a fleet it cannot
// take anywhere safely: the old root gone from Vault while a cluster still
// signs under it.
func Derive(r Roots, v VaultView, cs []ClusterView) (State, error) {
	st := State{Clusters: make([]Phase, len(cs))}
	low := Last
	for i, c := range cs {
		st.Clusters[i] = c.Phase(r)
		low = min(low, st.Clusters[i])
	}
	if len(cs) == 0 {
		low = NotStarted
	}
	switch {
	case !v.ToPresent && !v.FromPresent:
		return st, fmt.Errorf("neither %s nor %s is an issuer of the mount", r.FromName, r.ToName)
	case !v.ToPresent:
		st.Phase = NotStarted
	case v.FromPresent:
		st.Phase = max(RootAdded, min(low, IntermediatesMoved))
		if st.Phase == IntermediatesMoved && v.Default == RefTo {
			st.Phase = DefaultSwitched
		}
	default:
		if low < IntermediatesMoved {
			var stuck []string
			for i, c := range cs {
				if st.Clusters[i] < IntermediatesMoved {
					stuck = append(stuck, c.Context)
				}
			}
			return st, fmt.Errorf("root %s is no longer in Vault, yet cluster(s) %s do not sign under %s: re-enroll them with --issuer-ref %s and renew their intermediates",
				r.FromName, strings.Join(stuck, ", "), r.ToName, r.ToName)
		}
		st.Phase = max(DefaultSwitched, low)
	}
	return st, nil
}

// Kind is what a step does.
type Kind string

// The steps, forward and back.
const (
	StepAddRoot    Kind = "add-root"    // generate B in Vault, not default
	StepTrust      Kind = "trust-both"  // renew one cluster until it trusts A and B
	StepMove       Kind = "move"        // policy, issuerRef and intermediate of one cluster to B
	StepDefault    Kind = "set-default" // make B (rollback: A) the default issuer
	StepWait       Kind = "wait"        // let workload certificates under A expire
	StepDeleteRoot Kind = "delete-root" // delete A's (rollback: B's) issuer from Vault
	StepDrop       Kind = "drop"        // renew one cluster until ca.crt lacks the deleted root
	StepGrace      Kind = "grace"       // wait for the syncer to drop it from root-cert.pem
	StepMoveBack   Kind = "move-back"   // rollback: one cluster back to A
	StepDone       Kind = "done"        // nothing left
)

// Step is the next thing to do.
type Step struct {
	Kind Kind
	// Phase is the phase the step works towards.
	Phase Phase
	// Cluster is the index of the cluster it concerns, -1 for Vault.
	Cluster int
	// Until is when a wait ends.
	Until time.Time
}

// Next picks the first step still missing on a forward rotation. waitEnds
// is when the wait before dropping A ends (zero: not known yet), now the
// current time.
func Next(r Roots, v VaultView, cs []ClusterView, waitEnds, now time.Time) (Step, error) {
	st, err := Derive(r, v, cs)
	if err != nil {
		return Step{}, err
	}
	vault := func(k Kind, p Phase) Step { return Step{Kind: k, Phase: p, Cluster: -1} }
	first := func(k Kind, p Phase, need func(int, ClusterView) bool) Step {
		for i, c := range cs {
			if need(i, c) {
				return Step{Kind: k, Phase: p, Cluster: i}
			}
		}
		return Step{}
	}
	switch st.Phase {
	case NotStarted:
		return vault(StepAddRoot, RootAdded), nil
	case RootAdded:
		return first(StepTrust, BothTrusted, func(i int, _ ClusterView) bool { return st.Clusters[i] < BothTrusted }), nil
	case BothTrusted:
		return first(StepMove, IntermediatesMoved, func(i int, _ ClusterView) bool { return st.Clusters[i] < IntermediatesMoved }), nil
	case IntermediatesMoved:
		return vault(StepDefault, DefaultSwitched), nil
	case DefaultSwitched:
		if v.FromPresent && (waitEnds.IsZero() || now.Before(waitEnds)) {
			return Step{Kind: StepWait, Phase: OldRootDropped, Cluster: -1, Until: waitEnds}, nil
		}
		if v.FromPresent {
			return vault(StepDeleteRoot, OldRootDropped), nil
		}
		return first(StepDrop, OldRootDropped, func(i int, _ ClusterView) bool { return st.Clusters[i] < OldRootDropped }), nil
	case OldRootDropped:
		return first(StepGrace, OldRootRetired, func(i int, _ ClusterView) bool { return st.Clusters[i] < OldRootRetired }), nil
	}
	return Step{Kind: StepDone, Phase: Last, Cluster: -1}, nil
}

// NextBack picks the first step still missing on a rollback to A.
func NextBack(r Roots, v VaultView, cs []ClusterView) (Step, error) {
	if !v.FromPresent {
		return Step{}, fmt.Errorf("cannot roll back: root %s is no longer in Vault (the rotation dropped it); rotate forward to a new root instead", r.FromName)
	}
	if v.Default == RefTo {
		return Step{Kind: StepDefault, Phase: BothTrusted, Cluster: -1}, nil
	}
	for i, c := range cs {
		if c.PolicyRef == RefTo || c.IssuerRef == RefTo || c.ChainRoot != r.From || c.SourceSigner != r.From || !c.trusts(r.From) {
			return Step{Kind: StepMoveBack, Phase: BothTrusted, Cluster: i}, nil
		}
	}
	if v.ToPresent {
		return Step{Kind: StepDeleteRoot, Phase: NotStarted, Cluster: -1}, nil
	}
	for i, c := range cs {
		if !c.rolledBack(r) {
			return Step{Kind: StepDrop, Phase: NotStarted, Cluster: i}, nil
		}
	}
	return Step{Kind: StepDone, Phase: NotStarted, Cluster: -1}, nil
}
