package issuer

import (
	"fmt"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// recorded keeps what reached the wrapped recorder.
type recorded struct{ events []string }

func (r *recorded) Eventf(regarding, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	r.events = append(r.events, fmt.Sprintf("%T %s %s %s", regarding, eventtype, reason, fmt.Sprintf(note, args...)))
}

func TestWithoutIssuedEventsDropsOnlyIssuerLibsSuccessEvent(t *testing.T) {
	cr, csr, iss := &cmapi.CertificateRequest{}, &certificatesv1.CertificateSigningRequest{}, &v1alpha1.VaultIssuer{}
	for _, tt := range []struct {
		name      string
		regarding runtime.Object
		eventtype string
		reason    string
		wantSent  bool
	}{
		{"issued request", cr, corev1.EventTypeNormal, "Issued", false},
		{"issued Kubernetes CSR", csr, corev1.EventTypeNormal, "Issued", false},
		{"retryable error on a request", cr, corev1.EventTypeWarning, "RetryableError", true},
		{"permanent error on a request", cr, corev1.EventTypeWarning, "PermanentError", true},
		{"waiting for the issuer", cr, corev1.EventTypeNormal, "WaitingForIssuerReady", true},
		{"a Warning that happens to be named Issued", cr, corev1.EventTypeWarning, "Issued", true},
		{"an issuer's own event", iss, corev1.EventTypeNormal, "Issued", true},
		{"issuer checked", iss, corev1.EventTypeNormal, "Checked", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r recorded
			WithoutIssuedEvents(&r).Eventf(tt.regarding, nil, tt.eventtype, tt.reason, "Synced", "note %d", 1)
			if got := len(r.events) == 1; got != tt.wantSent {
				t.Fatalf("sent = %v (%q), want %v", got, r.events, tt.wantSent)
			}
			if tt.wantSent {
				if want := fmt.Sprintf("%T %s %s note 1", tt.regarding, tt.eventtype, tt.reason); r.events[0] != want {
					t.Errorf("passed on %q, want %q", r.events[0], want)
				}
			}
		})
	}
}
