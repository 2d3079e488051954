package issuer

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// issuerLibReasonIssued is the reason of the Normal event issuer-lib
// (v0.11.0, SetIssued in controllers/request_objecthelper_*.go) emits on
// every request it signs. issuer-lib does not export it.
const issuerLibReasonIssued = "Issued"

// WithoutIssuedEvents wraps the recorder handed to issuer-lib so that it
// drops issuer-lib's Normal "Issued" event on CertificateRequests and
// CertificateSigningRequests, and passes every other event.
//
// That event is one API write per signed request, half of all the events
// a request causes (cert-manager's approver sends the other), and it says
// nothing the request does not already: the Ready condition, with reason
// Issued, is set in the same reconcile, and cert-manager reports the
// issuance on the Certificate. Failures and waits are Warning or other
// Normal events and still go out, as do the issuer's own events.
func WithoutIssuedEvents(r events.EventRecorder) events.EventRecorder {
	return withoutIssued{r}
}

type withoutIssued struct {
	events.EventRecorder
}

func (w withoutIssued) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if isSuccessEvent(regarding, eventtype, reason) {
		return
	}
	w.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// isSuccessEvent says whether an event is issuer-lib's report of a signed
// request.
func isSuccessEvent(regarding runtime.Object, eventtype, reason string) bool {
	if eventtype != corev1.EventTypeNormal || reason != issuerLibReasonIssued {
		return false
	}
	switch regarding.(type) {
	case *cmapi.CertificateRequest, *certificatesv1.CertificateSigningRequest:
		return true
	}
	return false
}
