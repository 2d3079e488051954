package issuer

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// The refresher wakes for a new spec or a new refresh annotation, and for
// the syncer's keys of the exchange ConfigMap, never for its own writes
// (which would loop) or the issuer's status updates.
func TestCRLRefreshTriggers(t *testing.T) {
	iss := func(gen int64, refresh string) *v1alpha1.VaultClusterIssuer {
		return &v1alpha1.VaultClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "vault", Generation: gen,
			Annotations: map[string]string{crlexchange.RefreshAnnotation: refresh}}}
	}
	p := refreshRequested()
	for _, tc := range []struct {
		name     string
		old, new *v1alpha1.VaultClusterIssuer
		want     bool
	}{
		{"new spec", iss(1, ""), iss(2, ""), true},
		{"revoke asks for a refresh", iss(1, ""), iss(1, "2026-12-01T10:00:00Z"), true},
		{"a status update", iss(1, "a"), iss(1, "a"), false},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if !p.Create(event.CreateEvent{Object: iss(1, "")}) {
		t.Error("a new issuer is not refreshed")
	}

	cm := func(data map[string]string) *corev1.ConfigMap { return &corev1.ConfigMap{Data: data} }
	own := crlexchange.OwnKey("istio-system", "istio-ca")
	q := ownEntriesChanged()
	for _, tc := range []struct {
		name     string
		old, new *corev1.ConfigMap
		want     bool
	}{
		{"the syncer published a new CRL", cm(map[string]string{own: "a"}), cm(map[string]string{own: "b"}), true},
		{"a Certificate's first entry", cm(nil), cm(map[string]string{own: "a"}), true},
		{"the issuer's own write", cm(map[string]string{own: "a", crlexchange.KeyVaultCRLs: "1"}), cm(map[string]string{own: "a", crlexchange.KeyVaultCRLs: "2"}), false},
	} {
		if got := q.Update(event.TypedUpdateEvent[*corev1.ConfigMap]{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
