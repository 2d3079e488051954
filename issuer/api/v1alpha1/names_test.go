package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// The syncer allows meshtrust's issuers by the group and kinds
// vaultcontract names; they must be this API's.
func TestGroupAndKindsAreVaultcontracts(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{vaultcontract.ClusterIssuerKind, vaultcontract.IssuerKind} {
		if !s.Recognizes(GroupVersion.WithKind(kind)) {
			t.Errorf("kind %s is not registered in %s", kind, GroupVersion)
		}
	}
	if GroupVersion.Group != vaultcontract.IssuerGroup {
		t.Errorf("API group %s, vaultcontract.IssuerGroup %s", GroupVersion.Group, vaultcontract.IssuerGroup)
	}
}
