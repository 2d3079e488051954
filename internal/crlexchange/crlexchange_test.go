package crlexchange

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// The syncer names the issuer kinds without importing the issuer; they
// must be the API's.
func TestKindsAreTheAPIs(t *testing.T) {
	if Group != v1alpha1.GroupVersion.Group {
		t.Errorf("Group %q, the API's is %q", Group, v1alpha1.GroupVersion.Group)
	}
	scheme := map[string]bool{}
	for _, obj := range []any{v1alpha1.VaultClusterIssuer{}, v1alpha1.VaultIssuer{}} {
		scheme[reflect.TypeOf(obj).Name()] = true
	}
	for _, k := range []string{KindClusterIssuer, KindIssuer} {
		if !scheme[k] {
			t.Errorf("kind %q is not one of the API's types %v", k, scheme)
		}
	}
}

func TestConfigMapFor(t *testing.T) {
	tests := []struct {
		name                string
		group, kind, issuer string
		want                types.NamespacedName
		ok                  bool
	}{
		{"cluster issuer", Group, KindClusterIssuer, "meshtrust-vault", types.NamespacedName{Namespace: "meshtrust-system", Name: "vaultclusterissuer-meshtrust-vault-crl"}, true},
		{"namespaced issuers take part in no exchange", Group, "VaultIssuer", "vault", types.NamespacedName{}, false},
		{"cert-manager's own issuer", "cert-manager.io", "ClusterIssuer", "ca", types.NamespacedName{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ConfigMapFor(tt.group, tt.kind, tt.issuer, "meshtrust-system")
			if got != tt.want || ok != tt.ok {
				t.Fatalf("got %v %v, want %v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	long := strings.Repeat("a", 250)
	if n := ConfigMapName(KindClusterIssuer, long); len(n) > maxObjectNameBytes || n == ConfigMapName(KindClusterIssuer, long+"b") {
		t.Errorf("a long issuer name gives %q (%d bytes), which must fit and stay distinct", n, len(n))
	}
	if k := OwnKey("istio-system", long); len(k) > maxObjectNameBytes || !IsOwnKey(k) {
		t.Errorf("a long Certificate name gives key %q", k)
	}
	if IsOwnKey(KeyVaultCRLs) || IsOwnKey(KeyPeers) || IsOwnKey(KeyStatus) || !IsOwnKey(OwnKey("istio-system", "istio-ca")) {
		t.Error("IsOwnKey must tell the syncer's keys from the issuer's")
	}
}

func TestStatusRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := Status{RefreshedAt: now, TrustDomain: "kind2",
		Peers:     []Peer{{TrustDomain: "kind3", Intermediates: 1}, {TrustDomain: "kind1"}},
		Published: map[string]time.Time{"ab": now}}
	text, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeStatus(text)
	if err != nil {
		t.Fatal(err)
	}
	if again.Peers[0].TrustDomain != "kind1" || !again.Published["ab"].Equal(now) {
		t.Errorf("round trip gave %+v", again)
	}
	if p := again.PendingPeers(); len(p) != 1 || p[0] != "kind1" {
		t.Errorf("pending %v, want [kind1]", p)
	}
	if _, err := DecodeStatus("{"); err == nil || !strings.Contains(err.Error(), KeyStatus) {
		t.Errorf("a broken status gives %v; want an error naming %s", err, KeyStatus)
	}
}
