package status

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// crlScenario: east carries an older CRL of the root than Vault's (a lag),
// west an expired one (an error), north none at all, south the tls layout.
func crlScenario(t *testing.T) ([]Input, Options) {
	root := newRoot(t, 1, "mesh root A")
	east := sign(t, root, intermediateOpts{seed: 11, cn: "east istio intermediate CA", td: "east.mesh", lifetime: 30 * day, age: day})
	west := sign(t, root, intermediateOpts{seed: 12, cn: "west istio intermediate CA", td: "west.mesh", lifetime: 30 * day, age: 2 * day})
	north := sign(t, root, intermediateOpts{seed: 17, cn: "north istio intermediate CA", td: "north.mesh", lifetime: 30 * day, age: day})
	south := sign(t, root, intermediateOpts{seed: 18, cn: "south istio intermediate CA", td: "south.mesh", lifetime: 30 * day, age: day})
	revoked := sign(t, root, intermediateOpts{seed: 19, cn: "gone istio intermediate CA", td: "gone.mesh", lifetime: 30 * day, age: 3 * day})
	up := sign(t, root, intermediateOpts{seed: 20, cn: "up istio intermediate CA", td: "up.mesh", lifetime: 30 * day, age: day})
	at := func(d time.Duration) time.Time { return epoch.Add(d) }
	oldRoot := root.CRL(t, epoch, pkitest.CRLSpec{Number: 4, ThisUpdate: at(-10 * time.Hour), NextUpdate: at(62 * time.Hour)})
	vaultRoot := root.CRL(t, epoch, pkitest.CRLSpec{Number: 5, ThisUpdate: at(-time.Hour), NextUpdate: at(71 * time.Hour), Revoked: []*x509.Certificate{revoked.Cert}})
	expiredRoot := root.CRL(t, epoch, pkitest.CRLSpec{Number: 3, ThisUpdate: at(-80 * time.Hour), NextUpdate: at(-8 * time.Hour)})
	own := func(c *pkitest.Cert) *x509.RevocationList {
		return c.CRL(t, epoch, pkitest.CRLSpec{Number: 1, ThisUpdate: c.Cert.NotBefore, NextUpdate: c.Cert.NotAfter})
	}
	withCRL := func(s *Input, crls ...*x509.RevocationList) *Input {
		s.Secret.Data[pki.CRLKey] = pkitest.CRLPEM(crls...)
		return s
	}
	ready := []cmapi.Certificate{readyCertificate(cmmeta.ConditionTrue, "Ready")}
	inputs := []Input{
		*withCRL(&Input{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready}, oldRoot, own(east)),
		*withCRL(&Input{Context: "west", Secret: istioSecret(t, west, root), Certificates: ready}, expiredRoot, own(west)),
		{Context: "north", Secret: istioSecret(t, north, root), Certificates: ready},
		{Context: "south", Secret: tlsSecret(t, south, root), Certificates: ready},
		*withCRL(&Input{Context: "up", Secret: istioSecret(t, up, root), Certificates: ready}, vaultRoot, own(up)),
		*withCRL(&Input{Context: "gone", Secret: istioSecret(t, revoked, root), Certificates: ready}, vaultRoot, own(revoked)),
	}
	return inputs, Options{VaultCRLs: []IssuedCRL{{Name: "meshtrust-root", Issuer: root.Cert, CRL: vaultRoot}}}
}

func TestCRLStatus(t *testing.T) {
	inputs, opts := crlScenario(t)
	r := Build(inputs, epoch, opts)
	checkGolden(t, "crl", r)

	if got := r.Unhealthy(); !slices.Equal(got, []string{"west", "gone"}) {
		t.Errorf("unhealthy %v, want west (an expired CRL) and gone (a revoked intermediate)", got)
	}
	if p := r.Clusters[5].Problems; len(p) != 1 || !strings.Contains(p[0], "is revoked") {
		t.Errorf("gone's problems: %q", p)
	}
	for _, w := range []string{
		"east: ca-crl.pem carries CRL #4 of meshtrust-root, Vault's is #5 (it lags)",
		"north: cacerts carries no ca-crl.pem",
		"south: the tls layout cannot carry a CRL",
	} {
		if !slices.ContainsFunc(r.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning %q in %q", w, r.Warnings)
		}
	}
	if slices.ContainsFunc(r.Warnings, func(s string) bool { return strings.HasPrefix(s, "up:") }) {
		t.Errorf("up carries Vault's CRL, yet warned about: %q", r.Warnings)
	}
	up := r.Clusters[4].CRL
	if up == nil || !up.Present || up.CRLs != 2 || up.RevokedSerials != 1 || !up.NextUpdate.Equal(epoch.Add(71*time.Hour)) {
		t.Errorf("up's CRL = %+v", up)
	}

	// Without Vault's CRLs there is nothing to lag behind, but expiry still counts.
	r = Build(inputs, epoch, Options{})
	if got := r.Unhealthy(); !slices.Equal(got, []string{"west", "gone"}) || slices.ContainsFunc(r.Warnings, func(s string) bool { return strings.Contains(s, "lags") }) {
		t.Errorf("without Vault: unhealthy %v, warnings %q", got, r.Warnings)
	}
}

func TestCarries(t *testing.T) {
	root := newRoot(t, 1, "mesh root A")
	other := newRoot(t, 2, "mesh root B")
	v := []IssuedCRL{{Name: "a", Issuer: root.Cert, CRL: root.CRL(t, epoch, pkitest.CRLSpec{Number: 5})},
		{Name: "b", Issuer: other.Cert, CRL: other.CRL(t, epoch, pkitest.CRLSpec{Number: 2})}}
	roots := []*x509.Certificate{root.Cert}
	if ok, why := Carries(pkitest.CRLPEM(root.CRL(t, epoch, pkitest.CRLSpec{Number: 5})), roots, v); !ok {
		t.Errorf("carries the same number, yet: %s", why)
	}
	if ok, _ := Carries(pkitest.CRLPEM(root.CRL(t, epoch, pkitest.CRLSpec{Number: 6})), roots, v); !ok {
		t.Error("a newer CRL counts as carried")
	}
	if ok, why := Carries(pkitest.CRLPEM(root.CRL(t, epoch, pkitest.CRLSpec{Number: 4})), roots, v); ok || !strings.Contains(why, "lags") {
		t.Errorf("an older CRL: %v %q", ok, why)
	}
	if ok, _ := Carries(nil, roots, v); ok {
		t.Error("no file carries nothing")
	}
}
