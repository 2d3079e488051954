package rotation

import (
	"errors"
	"testing"
	"time"
)

var roots = Roots{FromName: "root-a", ToName: "root-b", From: "aaaa", To: "bbbb"}

// view builds a cluster view: what it signs under, ca.crt, root-cert.pem
// (also what istiod publishes) and the policy and issuerRef.
func view(name, signer string, src, bundle []string, ref Ref) ClusterView {
	return ClusterView{Context: name, PolicyRef: ref, IssuerRef: ref, SourceSigner: signer, ChainRoot: signer,
		SourceRoots: src, CACertsRoots: bundle, Published: bundle, CheckIstiod: true}
}

var (
	a, b, ab = []string{"aaaa"}, []string{"bbbb"}, []string{"aaaa", "bbbb"}
	start    = view("c", "aaaa", a, a, RefFrom)
	trusting = view("c", "aaaa", ab, ab, RefFrom)
	moved    = view("c", "bbbb", ab, ab, RefTo)
	dropped  = view("c", "bbbb", b, ab, RefTo)
	retired  = view("c", "bbbb", b, b, RefTo)
)

func TestClusterPhase(t *testing.T) {
	unpublished := trusting
	unpublished.Published = a
	halfMoved := trusting
	halfMoved.PolicyRef = RefTo
	noIstiod := unpublished
	noIstiod.CheckIstiod = false
	// With CRLs carried, a root counts as trusted only once its CRL is
	// there too: a proxy checking CRLs refuses chains to a root it has no
	// CRL of.
	crlLagging := trusting
	crlLagging.CACertsCRLs = CRLCover{Carried: true, Roots: a}
	crlLagging.PublishedCRLs = CRLCover{Carried: true, Roots: ab}
	notPublishedCRL := trusting
	notPublishedCRL.CACertsCRLs = CRLCover{Carried: true, Roots: ab}
	notPublishedCRL.PublishedCRLs = CRLCover{Carried: true, Roots: a}
	withCRLs := notPublishedCRL
	withCRLs.PublishedCRLs = CRLCover{Carried: true, Roots: ab}
	retiredKeepingCRL := retired
	retiredKeepingCRL.CACertsCRLs = CRLCover{Carried: true, Roots: ab}
	for _, tc := range []struct {
		name string
		v    ClusterView
		want Phase
	}{
		{"on the old root", start, NotStarted},
		{"both in root-cert.pem, istiod not yet publishing them", unpublished, NotStarted},
		{"both in root-cert.pem, no istiod to check", noIstiod, BothTrusted},
		{"trusts both", trusting, BothTrusted},
		{"both in root-cert.pem, ca-crl.pem without the new root's CRL", crlLagging, NotStarted},
		{"both in root-cert.pem and CRLs, istiod not yet publishing the new CRL", notPublishedCRL, NotStarted},
		{"trusts both, with the CRLs of both", withCRLs, BothTrusted},
		{"old root gone, its last CRL carried (harmless)", retiredKeepingCRL, OldRootRetired},
		{"policy moved, issuerRef and intermediate not yet", halfMoved, BothTrusted},
		{"moved", moved, IntermediatesMoved},
		{"ca.crt dropped the old root, the syncer keeps it", dropped, OldRootDropped},
		{"old root gone", retired, OldRootRetired},
		{"unreachable", ClusterView{Err: errors.New("down")}, NotStarted},
	} {
		if got := tc.v.Phase(roots); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestNext(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	both := VaultView{FromPresent: true, ToPresent: true, Default: RefFrom}
	switched := VaultView{FromPresent: true, ToPresent: true, Default: RefTo}
	fromGone := VaultView{ToPresent: true, Default: RefTo}
	named := func(v ClusterView, n string) ClusterView { v.Context = n; return v }
	for _, tc := range []struct {
		name     string
		v        VaultView
		cs       []ClusterView
		waitEnds time.Time
		want     Kind
		cluster  int
		phase    Phase
	}{
		{"nothing yet", VaultView{FromPresent: true, Default: RefFrom}, []ClusterView{start, start}, time.Time{}, StepAddRoot, -1, NotStarted},
		{"root added", both, []ClusterView{start, start}, time.Time{}, StepTrust, 0, RootAdded},
		{"one trusts both", both, []ClusterView{trusting, start}, time.Time{}, StepTrust, 1, RootAdded},
		// A cluster may not move while another does not trust both yet.
		{"one moved ahead, one not trusting", both, []ClusterView{moved, start}, time.Time{}, StepTrust, 1, RootAdded},
		{"all trust both", both, []ClusterView{trusting, trusting}, time.Time{}, StepMove, 0, BothTrusted},
		{"one moved", both, []ClusterView{moved, trusting}, time.Time{}, StepMove, 1, BothTrusted},
		{"all moved", both, []ClusterView{moved, moved}, time.Time{}, StepDefault, -1, IntermediatesMoved},
		{"default switched, wait running", switched, []ClusterView{moved, moved}, now.Add(time.Minute), StepWait, -1, DefaultSwitched},
		{"default switched, wait not known", switched, []ClusterView{moved, moved}, time.Time{}, StepWait, -1, DefaultSwitched},
		{"wait over", switched, []ClusterView{moved, moved}, now, StepDeleteRoot, -1, DefaultSwitched},
		{"old root deleted", fromGone, []ClusterView{dropped, moved}, time.Time{}, StepDrop, 1, DefaultSwitched},
		{"dropped everywhere", fromGone, []ClusterView{dropped, retired}, time.Time{}, StepGrace, 0, OldRootDropped},
		{"done", fromGone, []ClusterView{retired, retired}, time.Time{}, StepDone, -1, OldRootRetired},
	} {
		cs := make([]ClusterView, len(tc.cs))
		for i, c := range tc.cs {
			cs[i] = named(c, string(rune('p'+i)))
		}
		st, err := Next(roots, tc.v, cs, tc.waitEnds, now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if st.Kind != tc.want || st.Cluster != tc.cluster {
			t.Errorf("%s: next %s on cluster %d, want %s on %d", tc.name, st.Kind, st.Cluster, tc.want, tc.cluster)
		}
		if s, _ := Derive(roots, tc.v, cs); s.Phase != tc.phase {
			t.Errorf("%s: fleet at %s, want %s", tc.name, s.Phase, tc.phase)
		}
	}
	// The old root gone while a cluster still signs under it: refuse.
	if _, err := Next(roots, fromGone, []ClusterView{moved, trusting}, time.Time{}, now); err == nil {
		t.Error("old root gone from Vault with a cluster not moved: want a refusal")
	}
}

func TestNextBack(t *testing.T) {
	switched := VaultView{FromPresent: true, ToPresent: true, Default: RefTo}
	both := VaultView{FromPresent: true, ToPresent: true, Default: RefFrom}
	toGone := VaultView{FromPresent: true, Default: RefFrom}
	back := view("c", "aaaa", a, ab, RefFrom)
	for _, tc := range []struct {
		name    string
		v       VaultView
		cs      []ClusterView
		want    Kind
		cluster int
	}{
		{"default on the new root", switched, []ClusterView{moved, moved}, StepDefault, -1},
		{"moved clusters go back", both, []ClusterView{trusting, moved}, StepMoveBack, 1},
		{"half-moved cluster goes back", both, []ClusterView{func() ClusterView { v := trusting; v.PolicyRef = RefTo; return v }()}, StepMoveBack, 0},
		{"all back, new root still in Vault", both, []ClusterView{trusting, trusting}, StepDeleteRoot, -1},
		{"new root deleted, ca.crt still has it", toGone, []ClusterView{trusting, back}, StepDrop, 0},
		{"rolled back", toGone, []ClusterView{back, back}, StepDone, -1},
	} {
		st, err := NextBack(roots, tc.v, tc.cs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if st.Kind != tc.want || st.Cluster != tc.cluster {
			t.Errorf("%s: next %s on cluster %d, want %s on %d", tc.name, st.Kind, st.Cluster, tc.want, tc.cluster)
		}
	}
	if _, err := NextBack(roots, VaultView{ToPresent: true, Default: RefTo}, []ClusterView{dropped}); err == nil {
		t.Error("rollback after the old root was dropped: want a refusal")
	}
}

func TestNextRecord(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r := nextRecord(nil, roots, BothTrusted, false, t0)
	if r == nil || r.MovedAt != nil {
		t.Fatalf("phase 2 record %+v: want one without movedAt", r)
	}
	if again := nextRecord(r, roots, BothTrusted, false, t0.Add(time.Hour)); again != nil {
		t.Errorf("the same phase again rewrote the record: %+v", again)
	}
	m := nextRecord(r, roots, IntermediatesMoved, false, t0.Add(time.Hour))
	if m == nil || m.MovedAt == nil || !m.MovedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("phase 3 record %+v: want movedAt at the first sight", m)
	}
	// Later phases keep the first movedAt: a crash can only lengthen the wait.
	l := nextRecord(m, roots, OldRootDropped, false, t0.Add(2*time.Hour))
	if l == nil || !l.MovedAt.Equal(*m.MovedAt) {
		t.Errorf("phase 5 record %+v: movedAt changed", l)
	}
	p, err := ParseRecord(l.encode())
	if err != nil || p.Phase != OldRootDropped || !p.MovedAt.Equal(*m.MovedAt) {
		t.Errorf("record does not survive its annotation: %+v, %v", p, err)
	}
	if _, err := ParseRecord("{"); err == nil {
		t.Error("a broken annotation parsed")
	}
}
