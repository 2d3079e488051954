package decision

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// Reasons of the CRL decisions and checks.
const (
	ReasonWaitingForCRL       = "WaitingForCRLPropagation"
	ReasonCRLNotPropagated    = "InstalledBeforeCRLPropagated"
	ReasonInvalidCRL          = "InvalidCRL"
	ReasonCRLNotCarried       = "CRLNotCarriedByLayout"
	ReasonCRLNotCarriedIssuer = "CRLNotCarriedByIssuer"
	ReasonCRLIncomplete       = "CRLIncomplete"
	ReasonCRLWaitingOnPeers   = "CRLWaitingForPeers"
	ReasonCRLSynced           = "CRLSynced"
	ReasonIntermediateRevoked = "IntermediateRevoked"
)

// CRLGateInput is what the propagation gate looks at.
type CRLGateInput struct {
	// Now is the reconcile time.
	Now time.Time
	// New is the intermediate the source Secret holds.
	New *x509.Certificate
	// Installed is the intermediate cacerts holds now, nil if none.
	Installed *x509.Certificate
	// Published maps the fingerprints of this cluster's intermediates to
	// when the issuer found each in Vault's CRL exchange; nil when no
	// issuer hands this Certificate CRLs.
	Published map[string]time.Time
	// Peers is how many other clusters take part in the exchange.
	Peers int
	// Delay is how long a published CRL takes to reach the other clusters'
	// proxies (their issuers' refresh, their kubelets' sync of istiod's and
	// the proxies' volumes).
	Delay time.Duration
	// Guard is the lifetime guard: an installed intermediate with less
	// than this left is replaced without waiting.
	Guard time.Duration
}

// Hold keeps a new intermediate out of cacerts for now.
type Hold struct {
	// Until is when it may go in; zero until the issuer has published its
	// CRL (the exchange ConfigMap's update wakes the syncer).
	Until time.Time
	// Message says why, for the condition and the event.
	Message string
}

// CRLPropagation decides whether a new intermediate must wait before istiod
// signs with it: every other cluster carrying CRLs refuses a chain through
// an intermediate whose CRL it lacks, so the intermediate's CRL goes out
// first (the syncer publishes it and puts it into ca-crl.pem at once), and
// the intermediate follows once the issuer has published that CRL in Vault
// and Delay has passed. Nothing waits when no CRLs travel, when there is no
// other cluster, or when the installed intermediate is about to expire (the
// warning says so).
func CRLPropagation(in CRLGateInput) (*Hold, *Warning) {
	switch {
	case in.Published == nil || in.Peers == 0 || in.New == nil:
		return nil, nil
	case in.Installed != nil && in.Installed.Equal(in.New):
		return nil, nil
	}
	at, published := in.Published[pki.Fingerprint(in.New)]
	ready := published && !in.Now.Before(at.Add(in.Delay))
	if ready {
		return nil, nil
	}
	if in.Installed != nil && in.Installed.NotAfter.Sub(in.Now) < in.Guard {
		return nil, &Warning{Reason: ReasonCRLNotPropagated, Message: fmt.Sprintf(
			"installing intermediate serial %x before its CRL has reached the other clusters: the installed one (serial %x) expires at %s, inside the lifetime guard; other clusters refuse workload certificates of the new one until they carry its CRL",
			in.New.SerialNumber, in.Installed.SerialNumber, in.Installed.NotAfter.UTC().Format(time.RFC3339))}
	}
	if !published {
		return &Hold{Message: fmt.Sprintf("intermediate serial %x waits until the issuer has published its CRL in Vault's CRL exchange, where the other %d cluster(s) read it", in.New.SerialNumber, in.Peers)}, nil
	}
	until := at.Add(in.Delay)
	return &Hold{Until: until, Message: fmt.Sprintf("intermediate serial %x waits until %s: its CRL went into Vault's CRL exchange at %s, and the other %d cluster(s) need up to %s (--syncer-crl-propagation-delay) to carry it before its workload certificates appear",
		in.New.SerialNumber, until.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339), in.Peers, in.Delay)}, nil
}
