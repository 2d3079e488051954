package issuer

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// What one cluster may hand every other through Vault's CRL exchange: its
// own intermediates under a live root, each with a valid CRL. Anything else
// is dropped with a reason, and never stops the rest of the entry.
func TestCheckEntry(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(365 * 24 * time.Hour)}, nil)
	foreign := pkitest.New(t, now, pkitest.Spec{CN: "foreign root"}, nil)
	inter := func(td string, parent *pkitest.Cert, notAfter time.Time) *pkitest.Cert {
		return pkitest.New(t, now, pkitest.Spec{CN: td + " istio intermediate CA", MaxPathLenZero: true, PermittedURIDomains: []string{td}, NotAfter: notAfter}, parent)
	}
	kind3 := inter("kind3", root, time.Time{})
	kind3old := inter("kind3", root, now.Add(time.Hour))
	expired := inter("kind3", root, time.Time{})
	spoof := inter("kind2", root, time.Time{})
	untrusted := inter("kind3", foreign, time.Time{})
	valid := func(c *pkitest.Cert) []byte { return pkitest.CRLPEM(c.CRL(t, now, pkitest.CRLSpec{})) }
	join := func(parts ...[]byte) string {
		var s []byte
		for _, p := range parts {
			s = append(s, p...)
		}
		return string(s)
	}
	tests := []struct {
		name      string
		text      string
		wantCerts int
		problem   string
	}{
		{"one intermediate with its CRL", join(kind3.PEM(), valid(kind3)), 1, ""},
		{"old and new intermediate", join(kind3.PEM(), valid(kind3), kind3old.PEM(), valid(kind3old)), 2, ""},
		{"empty: enrolled, nothing published", "", 0, ""},
		{"garbage", "garbage", 0, "crl-pem"},
		{"intermediate without a CRL", join(kind3.PEM()), 0, "has no valid CRL"},
		{"an expired CRL", join(kind3.PEM(), pkitest.CRLPEM(kind3.CRL(t, now, pkitest.CRLSpec{ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(-time.Hour)}))), 0, "crl-expired"},
		{"another cluster's intermediate", join(spoof.PEM(), valid(spoof)), 0, "not to the entry's trust domain kind3"},
		// Which roots the cluster trusts, retired ones in their grace
		// included, is the syncer's to check (checkPeerCRLs).
		{"under another root", join(untrusted.PEM(), valid(untrusted)), 1, ""},
		{"a root", join(root.PEM(), valid(root)), 0, "not an intermediate CA"},
		{"a stray CRL", join(kind3.PEM(), valid(kind3), valid(foreign)), 1, `CRL of "CN=foreign root" is not issued by any intermediate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, problem := checkEntry(tt.text, "kind3", now)
			if len(e.certs) != tt.wantCerts || len(e.crls) != tt.wantCerts {
				t.Fatalf("kept %d certificates and %d CRLs, want %d each (problem %q)", len(e.certs), len(e.crls), tt.wantCerts, problem)
			}
			if (tt.problem == "") != (problem == "") || !strings.Contains(problem, tt.problem) {
				t.Fatalf("problem %q, want one containing %q", problem, tt.problem)
			}
		})
	}
	t.Run("an expired intermediate is dropped silently", func(t *testing.T) {
		e, problem := checkEntry(join(expired.PEM(), valid(expired)), "kind3", expired.Cert.NotAfter)
		if len(e.certs) != 0 || problem != "" {
			t.Fatalf("kept %d, problem %q", len(e.certs), problem)
		}
	})
	t.Run("the rendering is canonical", func(t *testing.T) {
		a, _ := checkEntry(join(kind3.PEM(), valid(kind3), kind3old.PEM(), valid(kind3old)), "kind3", now)
		b, _ := checkEntry(a.pem(), "kind3", now)
		if a.pem() != b.pem() {
			t.Fatal("an entry rendered and read back renders differently")
		}
		if _, _, err := pki.DecodeCRLEntry([]byte(a.pem()), pki.MaxCRLPEMSize); err != nil {
			t.Fatal(err)
		}
	})
}

// The syncer publishes per Certificate; the issuer publishes their union.
func TestOwnEntryJoinsTheSyncersKeys(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(365 * 24 * time.Hour)}, nil)
	a := pkitest.New(t, now, pkitest.Spec{CN: "a", PermittedURIDomains: []string{"kind2"}}, root)
	b := pkitest.New(t, now, pkitest.Spec{CN: "b", PermittedURIDomains: []string{"kind2"}}, root)
	crl := func(c *pkitest.Cert) string {
		return string(c.PEM()) + string(pkitest.CRLPEM(c.CRL(t, now, pkitest.CRLSpec{})))
	}
	cm := &corev1.ConfigMap{Data: map[string]string{
		crlexchange.OwnKey("istio-system", "istio-ca"): crl(a),
		crlexchange.OwnKey("istio-canary", "istio-ca"): crl(a) + crl(b),
		crlexchange.KeyVaultCRLs:                       "not the syncer's",
	}}
	e, problem := ownEntry(cm, "kind2", now)
	if problem != "" || len(e.certs) != 2 || len(e.crls) != 2 {
		t.Fatalf("got %d intermediates (problem %q), want a and b once each", len(e.certs), problem)
	}
	if e, _ := ownEntry(nil, "kind2", now); len(e.certs) != 0 {
		t.Fatal("no ConfigMap, yet an entry")
	}
}
