package decision

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

func TestCRLPropagation(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(365 * 24 * time.Hour)}, nil)
	installed := pkitest.New(t, now, pkitest.Spec{CN: "old", NotAfter: now.Add(10 * 24 * time.Hour)}, root).Cert
	expiring := pkitest.New(t, now, pkitest.Spec{CN: "expiring", NotAfter: now.Add(time.Hour)}, root).Cert
	renewed := pkitest.New(t, now, pkitest.Spec{CN: "new"}, root).Cert
	fp := pki.Fingerprint(renewed)
	delay, guard := 5*time.Minute, 25*time.Hour
	tests := []struct {
		name      string
		installed *x509.Certificate
		published map[string]time.Time
		peers     int
		wantHold  bool
		wantUntil time.Time
		wantWarn  string
	}{
		{"no CRLs travel", installed, nil, 2, false, time.Time{}, ""},
		{"no other cluster", installed, map[string]time.Time{}, 0, false, time.Time{}, ""},
		{"already installed", renewed, map[string]time.Time{}, 2, false, time.Time{}, ""},
		{"not yet published", installed, map[string]time.Time{}, 2, true, time.Time{}, ""},
		{"first install waits too", nil, map[string]time.Time{}, 2, true, time.Time{}, ""},
		{"published a moment ago", installed, map[string]time.Time{fp: now.Add(-time.Minute)}, 2, true, now.Add(4 * time.Minute), ""},
		{"published long enough ago", installed, map[string]time.Time{fp: now.Add(-delay)}, 2, false, time.Time{}, ""},
		{"installed one inside the guard", expiring, map[string]time.Time{}, 2, false, time.Time{}, ReasonCRLNotPropagated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hold, warn := CRLPropagation(CRLGateInput{Now: now, New: renewed, Installed: tt.installed, Published: tt.published, Peers: tt.peers, Delay: delay, Guard: guard})
			if (hold != nil) != tt.wantHold {
				t.Fatalf("hold = %+v, want %v", hold, tt.wantHold)
			}
			if hold != nil && !hold.Until.Equal(tt.wantUntil) {
				t.Errorf("until %s, want %s", hold.Until, tt.wantUntil)
			}
			if hold != nil && !strings.Contains(hold.Message, "serial") {
				t.Errorf("message %q does not name the intermediate", hold.Message)
			}
			if (warn != nil) != (tt.wantWarn != "") || warn != nil && warn.Reason != tt.wantWarn {
				t.Errorf("warning = %+v, want %q", warn, tt.wantWarn)
			}
		})
	}
}
