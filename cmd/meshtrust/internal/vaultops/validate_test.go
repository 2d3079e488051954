package vaultops

import (
	"strings"
	"testing"
	"time"
)

func TestValidateTrustDomain(t *testing.T) {
	for _, tc := range []struct {
		td, why string // why empty means valid
	}{
		{td: "east.mesh"},
		{td: "kind2"},
		{td: "a-b.c0.example"},
		{td: "", why: "empty"},
		{td: "spiffe://east.mesh", why: "scheme"},
		{td: "east.mesh/ns", why: "path"},
		{td: "east.mesh:443", why: "port"},
		{td: "*.mesh", why: "wildcard"},
		{td: "east.mesh,west.mesh", why: "more than one"},
		{td: "east.mesh west.mesh", why: "more than one"},
		{td: ".mesh", why: "dot"},
		{td: "east.", why: "dot"},
		{td: "East.mesh", why: "uppercase"},
		{td: "east..mesh", why: "empty label"},
		{td: "-east.mesh", why: "character"},
		{td: "east_1.mesh", why: "character"},
		{td: strings.Repeat("a", 64) + ".mesh", why: "longer than 63"},
	} {
		err := ValidateTrustDomain(tc.td)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("ValidateTrustDomain(%q) = %v, want valid", tc.td, err)
		case tc.why != "" && (err == nil || !strings.Contains(err.Error(), tc.why)):
			t.Errorf("ValidateTrustDomain(%q) = %v, want an error about %q", tc.td, err, tc.why)
		}
	}
}

// Whatever passes validation is safe in a policy, a URI and a name constraint.
func FuzzValidateTrustDomain(f *testing.F) {
	for _, s := range []string{"east.mesh", "a,b", "x:1", "..", "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, td string) {
		if ValidateTrustDomain(td) != nil {
			return
		}
		if strings.ContainsAny(td, "\",:/*\\ \n{}[]") || strings.ToLower(td) != td || td == "" {
			t.Fatalf("accepted unsafe trust domain %q", td)
		}
	})
}

func TestValidateClusterName(t *testing.T) {
	for name, ok := range map[string]bool{"east": true, "kind-2": true, "": false, "East": false, "a/b": false, "a.b": false, strings.Repeat("a", 41): false} {
		if err := ValidateClusterName(name); (err == nil) != ok {
			t.Errorf("ValidateClusterName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestDur(t *testing.T) {
	for d, want := range map[time.Duration]string{2160 * time.Hour: "2160h", 90 * time.Minute: "1h30m", 20 * time.Minute: "20m", 1500 * time.Millisecond: "1.5s"} {
		if got := Dur(d); got != want {
			t.Errorf("Dur(%v) = %q, want %q", d, got, want)
		}
	}
}
