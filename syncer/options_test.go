package syncer

import (
	"strings"
	"testing"

	"github.com/meshtrust/meshtrust/syncer/decision"
)

func TestAllowedIssuersOption(t *testing.T) {
	o, err := DefaultOptions().complete()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.allowedIssuers) != 2 || o.allowedIssuers[0] != decision.DefaultAllowedIssuers()[0] {
		t.Errorf("default allowed issuers %v, want meshtrust's two kinds", o.allowedIssuers)
	}
	o = DefaultOptions()
	o.AllowedIssuers = []string{"Issuer.cert-manager.io/mesh-ca"}
	if o, err = o.complete(); err != nil || len(o.allowedIssuers) != 1 || o.allowedIssuers[0].Name != "mesh-ca" {
		t.Errorf("--syncer-allowed-issuers Issuer.cert-manager.io/mesh-ca: %v %v", o.allowedIssuers, err)
	}
	o = DefaultOptions()
	o.AllowedIssuers = []string{"vaultclusterissuers"}
	if _, err := o.complete(); err == nil || !strings.Contains(err.Error(), "--syncer-allowed-issuers") {
		t.Errorf("a bad --syncer-allowed-issuers entry: %v, want an error naming the flag", err)
	}
}
