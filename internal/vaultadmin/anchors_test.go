package vaultadmin

import (
	"slices"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

func TestRecordedAnchors(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := func(id string, age time.Duration, chain ...string) *RootInfo {
		c := pkitest.New(t, now, pkitest.Spec{CN: id, NotBefore: now.Add(-age)}, nil)
		return &RootInfo{IssuerID: id, IssuerName: "name-" + id, Cert: c.Cert, manualChain: chain}
	}
	a := root("a", 48*time.Hour, "a", "b")
	b := root("b", 24*time.Hour, "b", "a")
	stray := root("stray", 72*time.Hour)
	inter := &RootInfo{IssuerID: "i", Cert: pkitest.New(t, now, pkitest.Spec{CN: "i"}, pkitest.New(t, now, pkitest.Spec{CN: "p"}, nil)).Cert, manualChain: []string{"i", "a"}}
	for _, tc := range []struct {
		name    string
		issuers []*RootInfo
		want    []string
	}{
		{"none recorded yet", []*RootInfo{root("a", time.Hour), stray}, nil},
		{"two anchors, oldest first, the stray left out", []*RootInfo{b, stray, a}, []string{"a", "b"}},
		{"a root an anchor's chain names is an anchor: only bootstrap writes chains", []*RootInfo{root("a", time.Hour, "a", "stray"), stray}, []string{"stray", "a"}},
		{"a chain naming a deleted root", []*RootInfo{root("b", time.Hour, "b", "gone")}, []string{"b"}},
		{"an intermediate's chain records nothing", []*RootInfo{inter, stray, root("a", time.Hour)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := anchorIDs(recordedAnchors(tc.issuers)); !slices.Equal(got, tc.want) {
				t.Errorf("recorded anchors %v, want %v", got, tc.want)
			}
		})
	}
}
